package wikimap

import "strings"

// canonicalServerOverrides is the "Individual wikis" part of
// 'wgCanonicalServer' in wmf-config/InitialiseSettings.php of
// wikimedia/operations-mediawiki-config at
// 349dc0945240da7717da209fd55129e04a4c5507 (the MWCONF snapshot the embedded
// dblists come from), with "https://" removed: "dbname host" per line.
// Project wikis not listed here follow the per-project patterns in
// canonicalHost. Entries equal to the pattern (amwikimedia, testwiki, ...)
// are kept so the table can be compared with the source line by line.
// A dbname missing here and in every project dblist gets no host.
const canonicalServerOverrides = `
abstractwiki abstract.wikipedia.org
advisorswiki advisors.wikimedia.org
advisorywiki advisory.wikimedia.org
aewikimedia ae.wikimedia.org
amwikimedia am.wikimedia.org
arbcom_cswiki arbcom-cs.wikipedia.org
arbcom_dewiki arbcom-de.wikipedia.org
arbcom_enwiki arbcom-en.wikipedia.org
arbcom_fiwiki arbcom-fi.wikipedia.org
arbcom_itwiki wikipedia-it-arbcom.wikimedia.org
arbcom_nlwiki arbcom-nl.wikipedia.org
arbcom_plwiki wikipedia-pl-arbcom.wikimedia.org
arbcom_ruwiki arbcom-ru.wikipedia.org
arbcom_zhwiki wikipedia-zh-arbcom.wikimedia.org
arwikimedia ar.wikimedia.org
auditcomwiki auditcom.wikimedia.org
azwikimedia az.wikimedia.org
be_x_oldwiki be-tarask.wikipedia.org
boardgovcomwiki boardgovcom.wikimedia.org
boardwiki board.wikimedia.org
brwikimedia br.wikimedia.org
chairwiki chair.wikimedia.org
chapcomwiki affcom.wikimedia.org
checkuserwiki checkuser.wikimedia.org
cnwikimedia cn.wikimedia.org
collabwiki collab.wikimedia.org
conductwiki conduct.wikimedia.org
commonswiki commons.wikimedia.org
testcommonswiki test-commons.wikimedia.org
donatewiki donate.wikimedia.org
electcomwiki electcom.wikimedia.org
etwikimedia ee.wikimedia.org
execwiki exec.wikimedia.org
fdcwiki fdc.wikimedia.org
foundationwiki foundation.wikimedia.org
gewikimedia ge.wikimedia.org
grwikimedia gr.wikimedia.org
grantswiki grants.wikimedia.org
hiwikimedia hi.wikimedia.org
iegcomwiki iegcom.wikimedia.org
incubatorwiki incubator.wikimedia.org
internalwiki internal.wikimedia.org
labswiki wikitech.wikimedia.org
legalteamwiki legalteam.wikimedia.org
loginwiki login.wikimedia.org
maiwikimedia mai.wikimedia.org
mediawikiwiki www.mediawiki.org
metawiki meta.wikimedia.org
movementroleswiki movementroles.wikimedia.org
mxwikimedia mx.wikimedia.org
ngwikimedia ng.wikimedia.org
noboard_chapterswikimedia noboard-chapters.wikimedia.org
nostalgiawiki nostalgia.wikipedia.org
nycwikimedia nyc.wikimedia.org
officewiki office.wikimedia.org
ombudsmenwiki ombuds.wikimedia.org
otrs_wikiwiki vrt-wiki.wikimedia.org
outreachwiki outreach.wikimedia.org
pa_uswikimedia pa-us.wikimedia.org
projectcomwiki projectcom.wikimedia.org
punjabiwikimedia punjabi.wikimedia.org
qualitywiki quality.wikimedia.org
romdwikimedia romd.wikimedia.org
searchcomwiki searchcom.wikimedia.org
sourceswiki wikisource.org
spcomwiki spcom.wikimedia.org
specieswiki species.wikimedia.org
stewardwiki steward.wikimedia.org
strategywiki strategy.wikimedia.org
sysop_itwiki sysop-it.wikipedia.org
sysop_plwiki wikipedia-pl-sysop.wikimedia.org
techconductwiki techconduct.wikimedia.org
testwiki test.wikipedia.org
testwikidatawiki test.wikidata.org
thankyouwiki thankyou.wikipedia.org
transitionteamwiki transitionteam.wikimedia.org
u4cwiki u4c.wikimedia.org
usabilitywiki usability.wikimedia.org
vewikimedia ve.wikimedia.org
votewiki vote.wikimedia.org
wg_enwiki wg-en.wikipedia.org
wikidatawiki www.wikidata.org
wikifunctionswiki www.wikifunctions.org
wikimania2005wiki wikimania2005.wikimedia.org
wikimania2006wiki wikimania2006.wikimedia.org
wikimania2007wiki wikimania2007.wikimedia.org
wikimania2008wiki wikimania2008.wikimedia.org
wikimania2009wiki wikimania2009.wikimedia.org
wikimania2010wiki wikimania2010.wikimedia.org
wikimania2011wiki wikimania2011.wikimedia.org
wikimania2012wiki wikimania2012.wikimedia.org
wikimania2013wiki wikimania2013.wikimedia.org
wikimania2014wiki wikimania2014.wikimedia.org
wikimania2015wiki wikimania2015.wikimedia.org
wikimania2016wiki wikimania2016.wikimedia.org
wikimania2017wiki wikimania2017.wikimedia.org
wikimania2018wiki wikimania2018.wikimedia.org
wikimaniawiki wikimania.wikimedia.org
wikimaniateamwiki wikimaniateam.wikimedia.org
`

// hostOverrides parses canonicalServerOverrides.
func hostOverrides() map[string]string {
	m := make(map[string]string, 128)
	for line := range strings.Lines(canonicalServerOverrides) {
		db, host, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok {
			m[db] = host
		}
	}
	return m
}

// projectSuffix is the dbname suffix of a project with a per-language host
// pattern 'https://$lang.<project>.org' in wgCanonicalServer, "" for other
// families (wikidata has no pattern: both its wikis are overrides).
func projectSuffix(family string) string {
	switch family {
	case "wikipedia":
		return "wiki"
	case "wikibooks", "wikimedia", "wikinews", "wikiquote", "wikisource",
		"wikiversity", "wikivoyage", "wiktionary":
		return family
	}
	return ""
}

// canonicalHost is what wgCanonicalServer gives the wiki, without scheme.
// $lang is the dbname minus the project suffix with '_' turned into '-', as
// MediaWiki's SiteConfiguration::siteFromDB derives it (zh_min_nanwiki →
// zh-min-nan.wikipedia.org). "" if the wiki has no known host.
func canonicalHost(dbname, family string, overrides map[string]string) string {
	if h, ok := overrides[dbname]; ok {
		return h
	}
	suffix := projectSuffix(family)
	if suffix == "" {
		return ""
	}
	lang, ok := strings.CutSuffix(dbname, suffix)
	if !ok || lang == "" {
		return ""
	}
	return strings.ReplaceAll(lang, "_", "-") + "." + family + ".org"
}

// mobileHost is the MobileFrontend host of a canonical host: "m" after the
// first label (en.m.wikipedia.org, commons.m.wikimedia.org), in place of
// "www" (m.wikidata.org, m.mediawiki.org), or in front of a bare project
// domain (m.wikisource.org); the shapes of wgMobileUrlTemplate '%h0.m.%h1.%h2'
// and its 'm.%h1.%h2' exceptions. "" if host has fewer than two labels.
func mobileHost(host string) string {
	first, rest, ok := strings.Cut(host, ".")
	if !ok {
		return ""
	}
	switch {
	case first == "www":
		return "m." + rest
	case !strings.Contains(rest, "."):
		return "m." + host
	default:
		return first + ".m." + rest
	}
}
