package simulate

// This file is the error catalogue: the real MediaWiki errors the
// simulator draws from, as data, with the few functions that render them.
// It stays one file because the catalogue is read as one list.

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// role is where an error is logged, relative to the request that causes it.
type role uint8

const (
	roleRequest role = iota // by the request itself (its pod, URL and reqId)
	roleJob                 // by a jobrunner running a job the request enqueued
	roleParsoid             // by a Parsoid render of the request's page
)

// entry is the PHP entry point, which sets the outer frames of a trace.
type entry uint8

const (
	entryIndex entry = iota
	entryLoad
	entryAPI
	entryRest
	entryJob
	numEntries
)

// errorDef is one kind of logged error: a recurring background error of the
// catalogue or an injected one. Strings are plain text; the encoder escapes.
type errorDef struct {
	id      string
	channel string
	level   int    // Monolog level: 400 ERROR, 300 WARNING
	class   string // exception class; "" when the log carries no exception

	// prefixed errors are logged by MWExceptionHandler: message
	// "[<reqId>] <url>   <head>", normalized_message
	// "[{reqId}] {exception_url}   <head>", plus exception_url and caught_by.
	prefixed bool
	head     string
	// text is the exception's message, or for an unprefixed log its message
	// when msg is nil.
	text       string
	excMsg     string // the exception's own message when it differs from text
	normalized string
	// msg appends the interpolated message of an unprefixed log whose
	// normalized_message keeps placeholders; ctx appends its extra context
	// fields (",\"key\":value" JSON). Both see the same errCtx.
	msg func(b []byte, c *errCtx) []byte
	ctx func(b []byte, c *errCtx) []byte

	file     string   // origin file relative to the MediaWiki root; "" = none
	line     int      // origin line
	frames   []string // innermost first, "{root}" = /srv/mediawiki/php-<version>/; entry frames are added
	caughtBy string
	role     role
	fatal    bool    // logged by php-wmerrors, not MediaWiki: no wiki, no mwversion
	status   int     // HTTP status it forces on its request; 0 = none
	rate     float64 // background rate per request; 0 for injected errors

	// rendered caches the escaped file and trace per (version, entry).
	rendered map[int]*renderedDef
}

type renderedDef struct {
	file  []byte // JSON-escaped "<root><file>:<line>"
	trace []byte // JSON-escaped trace
}

// errCtx is what a dynamic message or context sees.
type errCtx struct {
	w      *wikiInfo
	n1, n2 uint32 // random numbers, shared by msg and ctx so they agree
}

func (d *errorDef) excMessage() string {
	if d.excMsg != "" {
		return d.excMsg
	}
	return d.text
}

func (d *errorDef) levelNames() (levelName, severity string) {
	if d.level >= 400 {
		return "ERROR", "err"
	}
	return "WARNING", "warning"
}

// render returns the escaped file and trace for a version root and entry.
func (d *errorDef) render(vi int, root string, e entry) *renderedDef {
	key := vi*int(numEntries) + int(e)
	if r, ok := d.rendered[key]; ok {
		return r
	}
	if d.rendered == nil {
		d.rendered = make(map[int]*renderedDef)
	}
	r := &renderedDef{}
	if d.file != "" {
		f := root + d.file + ":" + strconv.Itoa(d.line)
		r.file = appendEscaped(nil, f)
		var sb strings.Builder
		if !d.fatal {
			sb.WriteString("from " + root + d.file + "(" + strconv.Itoa(d.line) + ")\n")
		}
		frames := append(append([]string(nil), d.frames...), entryFrames(e)...)
		for i, fr := range frames {
			sb.WriteString("#" + strconv.Itoa(i) + " " + strings.ReplaceAll(fr, "{root}", root) + "\n")
		}
		if !d.fatal {
			sb.WriteString("#" + strconv.Itoa(len(frames)) + " {main}")
		}
		r.trace = appendEscaped(nil, sb.String())
	}
	d.rendered[key] = r
	return r
}

// entryFrames are the outer frames of a trace through an entry point.
func entryFrames(e entry) []string {
	switch e {
	case entryLoad:
		return []string{
			`{root}includes/ResourceLoader/ResourceLoaderEntryPoint.php(55): MediaWiki\ResourceLoader\ResourceLoader->respond(MediaWiki\ResourceLoader\Context)`,
			`{root}includes/MediaWikiEntryPoint.php(202): MediaWiki\ResourceLoader\ResourceLoaderEntryPoint->execute()`,
			`{root}load.php(44): MediaWiki\MediaWikiEntryPoint->run()`,
			`/srv/mediawiki/w/load.php(3): require(string)`,
		}
	case entryAPI:
		return []string{
			`{root}includes/api/ApiMain.php(2011): MediaWiki\Api\ApiQuery->execute()`,
			`{root}includes/api/ApiMain.php(938): MediaWiki\Api\ApiMain->executeAction()`,
			`{root}includes/api/ApiMain.php(909): MediaWiki\Api\ApiMain->executeActionWithErrorHandling()`,
			`{root}includes/api/ApiEntryPoint.php(153): MediaWiki\Api\ApiMain->execute()`,
			`{root}includes/MediaWikiEntryPoint.php(202): MediaWiki\Api\ApiEntryPoint->execute()`,
			`{root}api.php(44): MediaWiki\MediaWikiEntryPoint->run()`,
			`/srv/mediawiki/w/api.php(3): require(string)`,
		}
	case entryRest:
		return []string{
			`{root}includes/Rest/Router.php(543): MediaWiki\Rest\Router->executeHandler(MediaWiki\Rest\Handler\ParsoidHandler)`,
			`{root}includes/Rest/Router.php(424): MediaWiki\Rest\Router->doExecute(string, MediaWiki\Rest\RequestFromGlobals)`,
			`{root}includes/Rest/EntryPoint.php(202): MediaWiki\Rest\Router->execute(MediaWiki\Rest\RequestFromGlobals)`,
			`{root}includes/MediaWikiEntryPoint.php(202): MediaWiki\Rest\EntryPoint->execute()`,
			`{root}rest.php(31): MediaWiki\MediaWikiEntryPoint->run()`,
			`/srv/mediawiki/w/rest.php(3): require(string)`,
		}
	case entryJob:
		return []string{
			`{root}includes/jobqueue/JobRunner.php(437): MediaWiki\JobQueue\JobRunner->doExecuteJob(MediaWiki\JobQueue\Jobs\RefreshLinksJob)`,
			`{root}includes/jobqueue/JobRunner.php(399): MediaWiki\JobQueue\JobRunner->executeJob(MediaWiki\JobQueue\Jobs\RefreshLinksJob)`,
			`{root}includes/jobqueue/JobExecutor.php(68): MediaWiki\JobQueue\JobRunner->executeJob(MediaWiki\JobQueue\Jobs\RefreshLinksJob)`,
			`/srv/mediawiki/rpc/RunSingleJob.php(60): MediaWiki\JobQueue\JobExecutor->execute(array)`,
		}
	default:
		return []string{
			`{root}includes/actions/ActionEntryPoint.php(733): MediaWiki\Actions\ActionEntryPoint->performAction(MediaWiki\Actions\ViewAction, MediaWiki\Title\Title)`,
			`{root}includes/actions/ActionEntryPoint.php(510): MediaWiki\Actions\ActionEntryPoint->performRequest()`,
			`{root}includes/actions/ActionEntryPoint.php(146): MediaWiki\Actions\ActionEntryPoint->main()`,
			`{root}includes/MediaWikiEntryPoint.php(202): MediaWiki\Actions\ActionEntryPoint->execute()`,
			`{root}index.php(58): MediaWiki\MediaWikiEntryPoint->run()`,
			`/srv/mediawiki/w/index.php(3): require(string)`,
		}
	}
}

// exceptionDef fills the MWExceptionHandler shape of an uncaught or
// handled exception.
func exceptionDef(d errorDef) *errorDef {
	d.prefixed = true
	if d.head == "" {
		d.head = d.class + ": " + d.text
	}
	d.normalized = truncateNormalized("[{reqId}] {exception_url}   " + d.head)
	if d.caughtBy == "" {
		d.caughtBy = "mwe_handler"
	}
	if d.level == 0 {
		d.level = 400
	}
	return &d
}

// logDef fills a plain Monolog log line.
func logDef(d errorDef) *errorDef {
	if d.normalized == "" {
		d.normalized = d.text
	}
	d.normalized = truncateNormalized(d.normalized)
	if d.level == 0 {
		d.level = 400
	}
	return &d
}

// backgroundCatalogue is the recurring noise of production: errors that
// occur on every wiki in proportion to its traffic, testwiki included, at
// about 3.8 per 10k requests in total. Each call returns fresh values, so a
// generator may cache renderings in them.
func backgroundCatalogue() []*errorDef {
	return []*errorDef{
		logDef(errorDef{
			id: "memcached-timeout", channel: "memcached", rate: 6e-5,
			normalized: `Memcached error for key "{memcached-key}" on server "{memcached-server}": A TIMEOUT OCCURRED`,
			msg: func(b []byte, c *errCtx) []byte {
				b = append(b, `Memcached error for key \"`...)
				b = appendMemcachedKey(b, c)
				return append(b, `\" on server \"127.0.0.1:11213\": A TIMEOUT OCCURRED`...)
			},
			ctx: func(b []byte, c *errCtx) []byte {
				b = append(b, `,"memcached-server":"127.0.0.1:11213","memcached-key":"`...)
				b = appendMemcachedKey(b, c)
				return append(b, '"')
			},
		}),
		exceptionDef(errorDef{
			id: "rdbms-deadlock", channel: "exception", class: `Wikimedia\Rdbms\DBQueryError`, rate: 1.5e-5,
			text:     "Error 1213: Deadlock found when trying to get lock; try restarting transaction\nFunction: MediaWiki\\Deferred\\LinksUpdate\\LinksUpdate::updateLinksTimestamp\nQuery: UPDATE  `page` SET page_links_updated = 'X' WHERE page_id = N",
			file:     "includes/libs/rdbms/database/Database.php",
			line:     1198,
			caughtBy: "other",
			role:     roleJob,
			frames: []string{
				`{root}includes/libs/rdbms/database/Database.php(1182): Wikimedia\Rdbms\Database->getQueryException(string, int, string, string)`,
				`{root}includes/libs/rdbms/database/Database.php(1156): Wikimedia\Rdbms\Database->getQueryExceptionAndLog(string, int, string, string)`,
				`{root}includes/libs/rdbms/database/Database.php(647): Wikimedia\Rdbms\Database->reportQueryError(string, int, string, string, bool)`,
				`{root}includes/libs/rdbms/database/Database.php(1437): Wikimedia\Rdbms\Database->query(Wikimedia\Rdbms\Query, string)`,
				`{root}includes/libs/rdbms/database/DBConnRef.php(127): Wikimedia\Rdbms\Database->update(string, array, array, string)`,
				`{root}includes/deferred/LinksUpdate/LinksUpdate.php(608): Wikimedia\Rdbms\DBConnRef->__call(string, array)`,
				`{root}includes/jobqueue/jobs/RefreshLinksJob.php(310): MediaWiki\Deferred\LinksUpdate\LinksUpdate->doUpdate()`,
			},
		}),
		exceptionDef(errorDef{
			id: "parsoid-bad-utf8", channel: "exception", class: `Wikimedia\Assert\InvariantException`, rate: 1e-5,
			text: "Invariant failed: Bad UTF-8 at start of string",
			file: "vendor/wikimedia/assert/src/Assert.php", line: 224,
			role: roleParsoid, status: 500,
			frames: []string{
				`{root}vendor/wikimedia/parsoid/src/Utils/Utils.php(412): Wikimedia\Assert\Assert::invariant(bool, string)`,
				`{root}vendor/wikimedia/parsoid/src/Html2Wt/WikitextSerializer.php(1502): Wikimedia\Parsoid\Utils\Utils::decodeWtEntities(string)`,
				`{root}vendor/wikimedia/parsoid/src/Parsoid.php(596): Wikimedia\Parsoid\Html2Wt\WikitextSerializer->serializeDOM(Wikimedia\Parsoid\DOM\Document)`,
				`{root}includes/parser/Parsoid/ParsoidParser.php(219): Wikimedia\Parsoid\Parsoid->wikitext2html(MediaWiki\Parser\Parsoid\Config\PageConfig, array)`,
			},
		}),
		exceptionDef(errorDef{
			id: "php-warning-title", channel: "error", class: "ErrorException", rate: 5e-5,
			head: `PHP Warning: Undefined array key "title"`, text: `PHP Warning: Undefined array key "title"`,
			file: "includes/skins/SkinTemplate.php", line: 845,
			frames: []string{
				`{root}includes/exception/MWExceptionHandler.php(290): MediaWiki\Exception\MWExceptionHandler::handleError(int, string, string, int, array)`,
				`{root}includes/skins/SkinTemplate.php(845): MediaWiki\Exception\MWExceptionHandler::handleError(int, string, string, int)`,
				`{root}includes/skins/SkinTemplate.php(1290): MediaWiki\Skin\SkinTemplate->buildContentNavigationUrlsInternal()`,
				`{root}includes/skins/SkinMustache.php(112): MediaWiki\Skin\SkinTemplate->getTemplateData()`,
				`{root}includes/skins/SkinTemplate.php(181): MediaWiki\Skin\SkinMustache->generateHTML()`,
				`{root}includes/Output/OutputPage.php(3185): MediaWiki\Skin\SkinTemplate->outputPage()`,
			},
		}),
		exceptionDef(errorDef{
			id: "php-deprecated-title", channel: "error", class: "ErrorException", rate: 3e-5, level: 300,
			head: `PHP Deprecated: Use of MediaWiki\Title\Title::newFromText with a non-string argument was deprecated in MediaWiki 1.45.`,
			text: `PHP Deprecated: Use of MediaWiki\Title\Title::newFromText with a non-string argument was deprecated in MediaWiki 1.45.`,
			file: "includes/debug/MWDebug.php", line: 382,
			frames: []string{
				`{root}includes/debug/MWDebug.php(382): trigger_error(string, int)`,
				`{root}includes/debug/MWDebug.php(188): MediaWiki\Debug\MWDebug::sendMessage(string, string, string, int)`,
				`{root}includes/GlobalFunctions.php(762): MediaWiki\Debug\MWDebug::deprecated(string, string, string, int)`,
				`{root}includes/title/Title.php(392): wfDeprecatedMsg(string, string)`,
				`{root}extensions/PageTriage/includes/Hooks.php(417): MediaWiki\Title\Title::newFromText(null)`,
			},
		}),
		logDef(errorDef{
			id: "job-cirrus-write", channel: "JobExecutor", rate: 2e-5, role: roleJob,
			text: "cirrusSearchElasticaWrite: failed after 3 attempts: Failed to write to cluster cloudelastic: 503 Service Unavailable",
		}),
		logDef(errorDef{
			id: "parsercache-rejected", channel: "ParserCache", level: 300, rate: 2e-5,
			text: "ParserOutput key valid, but rejected by RejectParserCacheValue hook handler.",
		}),
		logDef(errorDef{
			id: "centralauth-missing-user", channel: "CentralAuth", rate: 1.5e-5,
			normalized: "Unable to load global user {user}: user record is missing from globaluser",
			msg: func(b []byte, c *errCtx) []byte {
				b = append(b, "Unable to load global user Example"...)
				b = strconv.AppendUint(b, uint64(c.n1%50000), 10)
				return append(b, ": user record is missing from globaluser"...)
			},
			ctx: func(b []byte, c *errCtx) []byte {
				b = append(b, `,"user":"Example`...)
				b = strconv.AppendUint(b, uint64(c.n1%50000), 10)
				return append(b, '"')
			},
		}),
		logDef(errorDef{
			id: "externalstore-fetch", channel: "ExternalStore", rate: 1e-5,
			normalized: "ExternalStoreDB::fetchBlob: Unable to load external storage blob {blob_url}",
			msg: func(b []byte, c *errCtx) []byte {
				b = append(b, "ExternalStoreDB::fetchBlob: Unable to load external storage blob "...)
				return appendBlobURL(b, c)
			},
			ctx: func(b []byte, c *errCtx) []byte {
				b = append(b, `,"blob_url":"`...)
				b = appendBlobURL(b, c)
				return append(b, '"')
			},
		}),
		logDef(errorDef{
			id: "replication-lag", channel: "DBReplication", level: 300, rate: 2e-5,
			normalized: "Server {db_server} has {lag} seconds of lag (>= {maxlag})",
			msg: func(b []byte, c *errCtx) []byte {
				b = append(b, "Server "...)
				b = append(b, c.w.dbServer(c.n1)...)
				b = append(b, " has "...)
				b = appendLag(b, c)
				return append(b, " seconds of lag (>= 6)"...)
			},
			ctx: func(b []byte, c *errCtx) []byte {
				b = append(b, `,"db_server":"`...)
				b = append(b, c.w.dbServer(c.n1)...)
				b = append(b, `","lag":`...)
				b = appendLag(b, c)
				return append(b, `,"maxlag":6`...)
			},
		}),
		logDef(errorDef{
			id: "dbperformance-writes", channel: "DBPerformance", level: 300, rate: 4e-5,
			normalized: "Expectation ({measure} <= {max}) by {by} not met (actual: {actual})",
			text:       `Expectation (writes <= 0) by MediaWiki\Actions\ActionEntryPoint::execute not met (actual: 1)`,
			ctx: func(b []byte, _ *errCtx) []byte {
				return append(b, `,"measure":"writes","max":0,"by":"MediaWiki\\Actions\\ActionEntryPoint::execute","actual":1`...)
			},
		}),
		logDef(errorDef{
			id: "sqlbagostuff-lockwait", channel: "SQLBagOStuff", rate: 5e-6,
			text: "DBError: Lock wait timeout exceeded; try restarting transaction (pc1014)",
		}),
		logDef(errorDef{
			id: "session-merge", channel: "session", level: 300, rate: 2e-5,
			class: `MediaWiki\Session\MetadataMergeException`, file: "includes/Session/SessionProvider.php", line: 237,
			normalized: "Metadata merge failed: {exception}",
			text:       `Metadata merge failed: MediaWiki\Session\MetadataMergeException: Key "CentralAuthSource" changed`,
			excMsg:     `Key "CentralAuthSource" changed`,
			frames: []string{
				`{root}includes/Session/SessionManager.php(681): MediaWiki\Session\SessionProvider->mergeMetadata(array, array)`,
				`{root}includes/Session/SessionManager.php(262): MediaWiki\Session\SessionManager->loadSessionInfoFromStore(MediaWiki\Session\SessionInfo, MediaWiki\Request\WebRequest)`,
				`{root}includes/Session/SessionManager.php(174): MediaWiki\Session\SessionManager->getSessionInfoForRequest(MediaWiki\Request\WebRequest)`,
			},
		}),
		logDef(errorDef{
			id: "eventbus-deliver", channel: "EventBus", rate: 1e-5,
			normalized: "Unable to deliver all events: {eventbus_error}",
			text:       "Unable to deliver all events: 503: Service Unavailable",
			ctx: func(b []byte, _ *errCtx) []byte {
				return append(b, `,"eventbus_error":"503: Service Unavailable"`...)
			},
		}),
		logDef(errorDef{
			id: "poolcounter-timeout", channel: "poolcounter", level: 300, rate: 1e-5,
			normalized: "Pool key '{key}' ({type}): {error}",
			msg: func(b []byte, c *errCtx) []byte {
				b = append(b, "Pool key '"...)
				b = appendPoolKey(b, c)
				return append(b, "' (ArticleView): Timeout waiting for the lock"...)
			},
			ctx: func(b []byte, c *errCtx) []byte {
				b = append(b, `,"key":"`...)
				b = appendPoolKey(b, c)
				// "type" is reserved: MediaWiki's LogstashFormatter renames a
				// clashing context key and records the clash.
				return append(b, `","c_type":"ArticleView","error":"Timeout waiting for the lock","logstash_formatter_key_conflict":["type"]`...)
			},
		}),
		exceptionDef(errorDef{
			id: "request-timeout", channel: "exception", class: `Wikimedia\RequestTimeout\RequestTimeoutException`, rate: 8e-6,
			text: "The maximum execution time of 60 seconds was exceeded",
			file: "vendor/wikimedia/request-timeout/src/Detail/ExcimerTimerWrapper.php", line: 97, status: 500,
			frames: []string{
				`[internal function]: Wikimedia\RequestTimeout\Detail\ExcimerTimerWrapper->onTimeout(int)`,
				`{root}includes/libs/rdbms/database/DatabaseMySQL.php(697): mysqli->query(string, int)`,
				`{root}includes/libs/rdbms/database/Database.php(1080): Wikimedia\Rdbms\DatabaseMySQL->doSingleStatementQuery(string)`,
				`{root}includes/page/Article.php(508): MediaWiki\Page\ParserOutputAccess->getParserOutput(MediaWiki\Page\WikiPage, MediaWiki\Parser\ParserOptions)`,
			},
		}),
		exceptionDef(errorDef{
			id: "blob-access", channel: "exception", class: `MediaWiki\Storage\BlobAccessException`, rate: 5e-6,
			text: "Unable to fetch blob at tt:0. Use findBadBlobs.php to remedy.",
			file: "includes/Storage/SqlBlobStore.php", line: 301, status: 500,
			frames: []string{
				`{root}includes/Revision/RevisionStore.php(1080): MediaWiki\Storage\SqlBlobStore->getBlob(string, int)`,
				`{root}includes/Revision/RevisionStore.php(1325): MediaWiki\Revision\RevisionStore->loadSlotContent(MediaWiki\Revision\SlotRecord, null, null, null, int)`,
				`{root}includes/Revision/SlotRecord.php(307): MediaWiki\Revision\RevisionStore->MediaWiki\Revision\{closure}(MediaWiki\Revision\SlotRecord)`,
				`{root}includes/page/Article.php(440): MediaWiki\Revision\SlotRecord->getContent()`,
			},
		}),
		{
			id: "php-oom", channel: "exception", level: 400, fatal: true, rate: 5e-6, status: 500, caughtBy: "php-wmerrors",
			text:       "Allowed memory size of 698351616 bytes exhausted (tried to allocate 20480 bytes)",
			normalized: "Allowed memory size of 698351616 bytes exhausted (tried to allocate 20480 bytes) in FormatJson.php",
			file:       "includes/json/FormatJson.php", line: 297,
			frames: []string{
				`{root}includes/json/FormatJson.php(297): json_decode()`,
				`{root}includes/parser/ParserOutput.php(2871): MediaWiki\Json\FormatJson::parse()`,
				`{root}includes/parser/ParserCache.php(339): MediaWiki\Parser\ParserOutput::newFromJsonArray()`,
				`{root}includes/page/ParserOutputAccess.php(388): MediaWiki\Parser\ParserCache->get()`,
			},
		},
		exceptionDef(errorDef{
			id: "wikibase-redirect", channel: "exception", class: `Wikibase\Lib\Store\StorageException`, rate: 5e-6, caughtBy: "other",
			text: "Failed to load entity revision: unresolved redirect",
			file: "extensions/Wikibase/lib/includes/Store/Sql/WikiPageEntityMetaDataLookup.php", line: 185,
			frames: []string{
				`{root}extensions/Wikibase/lib/includes/Store/Sql/WikiPageEntityRevisionLookup.php(109): Wikibase\Lib\Store\Sql\WikiPageEntityMetaDataLookup->loadRevisionInformation(array, string)`,
				`{root}extensions/Wikibase/client/includes/DataAccess/ClientSiteLinkTitleLookup.php(64): Wikibase\Lib\Store\Sql\WikiPageEntityRevisionLookup->getEntityRevision(Wikibase\DataModel\Entity\ItemId)`,
				`{root}extensions/Wikibase/client/includes/Hooks/SidebarHookHandler.php(92): Wikibase\Client\DataAccess\ClientSiteLinkTitleLookup->getTitleForId(Wikibase\DataModel\Entity\ItemId)`,
			},
		}),
		logDef(errorDef{
			id: "cirrus-backend", channel: "CirrusSearch", level: 300, rate: 1.5e-5,
			normalized: "Search backend error during {queryType} search for '{query}' after {tookMs}: {error_message}",
			msg: func(b []byte, c *errCtx) []byte {
				b = append(b, "Search backend error during full_text search for '"...)
				b = append(b, searchTerm(c.n1)...)
				b = append(b, "' after "...)
				b = strconv.AppendUint(b, uint64(20+c.n2%9000), 10)
				return append(b, ": unknown: Status code 503; upstream connect error or disconnect/reset before headers. reset reason: overflow"...)
			},
			ctx: func(b []byte, c *errCtx) []byte {
				b = append(b, `,"queryType":"full_text","query":"`...)
				b = append(b, searchTerm(c.n1)...)
				b = append(b, `","tookMs":`...)
				b = strconv.AppendUint(b, uint64(20+c.n2%9000), 10)
				return append(b, `,"error_message":"unknown: Status code 503; upstream connect error or disconnect/reset before headers. reset reason: overflow"`...)
			},
		}),
		logDef(errorDef{
			id: "echo-x1", channel: "Echo", rate: 5e-6,
			text: "EchoUserNotificationGateway::getCappedNotificationCount: query failed on x1 (db1237): Lost connection to MySQL server during query",
		}),
	}
}

// Injected errors, one per incident kind. File is relative; ground truth
// reports it without the line.

func newPretrainRegressionError() *errorDef {
	return exceptionDef(errorDef{
		id: "injected-pretrain-typeerror", channel: "exception", class: "TypeError", status: 500,
		text: `MediaWiki\Linker\LinkRenderer::makeKnownLink(): Argument #1 ($target) must be of type MediaWiki\Linker\LinkTarget|MediaWiki\Page\PageReference, null given`,
		file: "includes/linker/LinkRenderer.php", line: 288,
		frames: []string{
			`{root}includes/skins/components/SkinComponentFooter.php(148): MediaWiki\Linker\LinkRenderer->makeKnownLink(null, string)`,
			`{root}includes/skins/components/SkinComponentFooter.php(96): MediaWiki\Skin\SkinComponentFooter->getFooterLinks()`,
			`{root}includes/skins/SkinTemplate.php(1290): MediaWiki\Skin\SkinComponentFooter->getTemplateData()`,
			`{root}includes/skins/SkinMustache.php(112): MediaWiki\Skin\SkinTemplate->getTemplateData()`,
		},
	})
}

func newSpilloverS3Error() *errorDef {
	return logDef(errorDef{
		id: "injected-s3-unknown-column", channel: "DBQuery", class: `Wikimedia\Rdbms\DBQueryError`, status: 500,
		text: "Error 1054: Unknown column 'foo_bar' in 'field list' (db1157)\nFunction: MediaWiki\\Page\\PageProps::getProperties\nQuery: SELECT  pp_page,pp_propname,pp_value,foo_bar  FROM `page_props`    WHERE pp_propname = 'wikibase_item'",
		file: "includes/libs/rdbms/database/Database.php", line: 1198,
		frames: []string{
			`{root}includes/libs/rdbms/database/Database.php(1182): Wikimedia\Rdbms\Database->getQueryException(string, int, string, string)`,
			`{root}includes/libs/rdbms/database/Database.php(1156): Wikimedia\Rdbms\Database->getQueryExceptionAndLog(string, int, string, string)`,
			`{root}includes/libs/rdbms/database/Database.php(647): Wikimedia\Rdbms\Database->reportQueryError(string, int, string, string, bool)`,
			`{root}includes/libs/rdbms/querybuilder/SelectQueryBuilder.php(746): Wikimedia\Rdbms\DBConnRef->select(array, array, array, string, array, array)`,
			`{root}includes/page/PageProps.php(121): Wikimedia\Rdbms\SelectQueryBuilder->fetchResultSet()`,
		},
	})
}

func newSpilloverJobError() *errorDef {
	return exceptionDef(errorDef{
		id: "injected-job-param", channel: "exception", class: "UnexpectedValueException", caughtBy: "other", role: roleJob,
		text: "RefreshLinksJob: unsupported 'causeAction' parameter format 'v2' written by a newer MediaWiki",
		file: "includes/jobqueue/jobs/RefreshLinksJob.php", line: 164,
		frames: []string{
			`{root}includes/jobqueue/jobs/RefreshLinksJob.php(129): MediaWiki\JobQueue\Jobs\RefreshLinksJob->runForTitle(MediaWiki\Page\PageIdentityValue)`,
		},
	})
}

func newTrainRegressionError() *errorDef {
	return exceptionDef(errorDef{
		id: "injected-train-typeerror", channel: "exception", class: "TypeError", status: 500,
		text: `MediaWiki\Page\PageProps::getProperties(): Argument #1 ($titles) must be of type iterable, null given`,
		file: "includes/page/PageProps.php", line: 102,
		frames: []string{
			`{root}extensions/PageImages/includes/PageImages.php(167): MediaWiki\Page\PageProps->getProperties(null, string)`,
			`{root}extensions/PageImages/includes/PageImages.php(361): PageImages\PageImages::getPageImageInternal(MediaWiki\Title\Title)`,
			`{root}includes/HookContainer/HookContainer.php(155): PageImages\PageImages->onBeforePageDisplay(MediaWiki\Output\OutputPage, MediaWiki\Skin\SkinVector22)`,
			`{root}includes/Output/OutputPage.php(3170): MediaWiki\HookContainer\HookContainer->run(string, array, array)`,
		},
	})
}

func newFleetDBError() *errorDef {
	return exceptionDef(errorDef{
		id: "injected-fleet-dbconnection", channel: "exception", class: `Wikimedia\Rdbms\DBConnectionError`, status: 500,
		text: "Cannot access the database: No working replica DB server: Unknown error",
		file: "includes/libs/rdbms/loadbalancer/LoadBalancer.php", line: 1221,
		frames: []string{
			`{root}includes/libs/rdbms/loadbalancer/LoadBalancer.php(1003): Wikimedia\Rdbms\LoadBalancer->reportConnectionError(string)`,
			`{root}includes/libs/rdbms/loadbalancer/LoadBalancer.php(944): Wikimedia\Rdbms\LoadBalancer->getServerConnection(int, string, int)`,
			`{root}includes/libs/rdbms/database/DBConnRef.php(95): Wikimedia\Rdbms\LoadBalancer->getConnectionInternal(int, array, string, int)`,
			`{root}includes/page/PageStore.php(364): Wikimedia\Rdbms\DBConnRef->__call(string, array)`,
		},
	})
}

func newLeakError() *errorDef {
	return exceptionDef(errorDef{
		id: "injected-leak-config", channel: "exception", class: `MediaWiki\Config\ConfigException`, status: 500,
		text: "GlobalVarConfig::get: undefined option: 'LinterV2Categories'",
		file: "includes/config/GlobalVarConfig.php", line: 54,
		frames: []string{
			`{root}extensions/Linter/src/Hooks.php(211): MediaWiki\Config\GlobalVarConfig->get(string)`,
			`{root}includes/HookContainer/HookContainer.php(155): MediaWiki\Linter\Hooks->onBeforePageDisplay(MediaWiki\Output\OutputPage, MediaWiki\Skin\SkinVector22)`,
		},
	})
}

// newWikiAnomalyError is a broken Lua module whose errors escape the
// parser as exceptions: the detector counts the exception channel (not
// Scribunto's own warnings), as scap's check does.
func newWikiAnomalyError() *errorDef {
	return exceptionDef(errorDef{
		id: "injected-scribunto", channel: "exception", class: `MediaWiki\Extension\Scribunto\ScribuntoException`, status: 500,
		text: "Lua error in Module:Citation/CS1 at line 4213: attempt to index field 'args' (a nil value).",
		file: "extensions/Scribunto/includes/Engines/LuaCommon/LuaEngine.php", line: 312,
		frames: []string{
			`{root}extensions/Scribunto/includes/Engines/LuaSandbox/LuaSandboxInterpreter.php(313): MediaWiki\Extension\Scribunto\Engines\LuaCommon\LuaEngine->handleLuaError(LuaSandboxRuntimeError)`,
			`{root}extensions/Scribunto/includes/Engines/LuaCommon/LuaEngine.php(259): MediaWiki\Extension\Scribunto\Engines\LuaSandbox\LuaSandboxInterpreter->callFunction(LuaSandboxFunction, array)`,
			`{root}extensions/Scribunto/includes/Hooks.php(178): MediaWiki\Extension\Scribunto\Engines\LuaCommon\LuaModule->invoke(string, PPTemplateFrame_Hash)`,
			`{root}includes/parser/Parser.php(3341): MediaWiki\Extension\Scribunto\Hooks::invokeHook(MediaWiki\Parser\Parser, PPTemplateFrame_Hash, array)`,
		},
	})
}

// truncateNormalized cuts a normalized message to the 255 bytes the
// wmf-config processor keeps, on a UTF-8 boundary.
func truncateNormalized(s string) string {
	const maxLen = 255
	if len(s) <= maxLen {
		return s
	}
	i := maxLen
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// Helpers for dynamic messages. Their output needs no JSON escaping.

func appendMemcachedKey(b []byte, c *errCtx) []byte {
	b = append(b, c.w.dbname...)
	b = append(b, ":pcache:idhash:"...)
	b = strconv.AppendUint(b, uint64(c.n1%90000000+1000), 10)
	return append(b, "-0!canonical"...)
}

func appendBlobURL(b []byte, c *errCtx) []byte {
	b = append(b, "DB://cluster3"...)
	b = append(b, byte('2'+c.n2%2))
	b = append(b, '/')
	return strconv.AppendUint(b, uint64(c.n1%40000000), 10)
}

func appendLag(b []byte, c *errCtx) []byte {
	tenths := 60 + c.n2%140 // 6.0 … 19.9 s
	b = strconv.AppendUint(b, uint64(tenths/10), 10)
	b = append(b, '.')
	return append(b, byte('0'+tenths%10))
}

func appendPoolKey(b []byte, c *errCtx) []byte {
	b = append(b, "ArticleView:"...)
	b = append(b, c.w.dbname...)
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(c.n1%9000000+1), 10)
}

func searchTerm(n uint32) string {
	terms := [...]string{"climate change", "taylor swift", "python", "list of countries", "1984", "world war ii", "bitcoin", "olympics 2028"}
	return terms[n%uint32(len(terms))]
}
