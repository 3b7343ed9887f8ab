# Generates ../mediawiki-k8s.jsonl (run from testdata/: python3 gen/mediawiki_k8s.py). See ../README.md.
import json
V = "1.47.0-wmf.16"
P = "/srv/mediawiki/php-%s/" % V
def rec(wrapper, k8s, mw):
    # syslog_cee: rsyslog keys, the kubernetes block, then MediaWiki's JSON spliced in (with its own "host").
    parts = [json.dumps(wrapper)[1:-1], '"kubernetes": ' + json.dumps(k8s), json.dumps(mw)[1:-1]]
    return "{" + ", ".join(parts) + "}"
def wrapper(ts, pod, sev="err"):
    return {"timestamp": ts, "logsource": pod, "host": pod, "program": "mediawiki", "severity": sev, "facility": "user"}
def k8s(ns, pod, release, node="kubernetes1042.eqiad.wmnet"):
    return {"host": node, "namespace_name": ns, "pod_name": pod, "labels": {"deployment": ns, "release": release}}
out = []
# 1. Pretrain main: DBQueryError thrown inside libs/rdbms while Echo reads x1.
pod1 = "mw-pretrain.eqiad.main-6d8f7c9b5-x7k2p"
trace1 = "\n".join([
 "from %sincludes/libs/rdbms/database/Database.php(1198)" % P,
 "#0 %sincludes/libs/rdbms/database/Database.php(1182): Wikimedia\\Rdbms\\Database->getQueryException(string, int, string, string)" % P,
 "#1 %sincludes/libs/rdbms/database/Database.php(1156): Wikimedia\\Rdbms\\Database->getQueryExceptionAndLog(string, int, string, string)" % P,
 "#2 %sincludes/libs/rdbms/database/Database.php(647): Wikimedia\\Rdbms\\Database->reportQueryError(string, int, string, string, bool)" % P,
 "#3 %sincludes/libs/rdbms/database/Database.php(1387): Wikimedia\\Rdbms\\Database->query(Wikimedia\\Rdbms\\Query, string)" % P,
 "#4 %sincludes/libs/rdbms/database/DBConnRef.php(127): Wikimedia\\Rdbms\\Database->select(array, array, array, string, array, array)" % P,
 "#5 %sextensions/Echo/includes/Mapper/NotificationMapper.php(162): Wikimedia\\Rdbms\\DBConnRef->__call(string, array)" % P,
 "#6 %sextensions/Echo/includes/NotifUser.php(418): MediaWiki\\Extension\\Notifications\\Mapper\\NotificationMapper->fetchUnreadByUser(MediaWiki\\User\\User, int, null, array)" % P,
 "#7 %sincludes/api/ApiMain.php(1949): MediaWiki\\Extension\\Notifications\\Api\\ApiEchoNotifications->execute()" % P,
 "#8 %sapi.php(90): ApiMain->execute()" % P,
 "#9 /srv/mediawiki/w/api.php(3): require(string)",
 "#10 {main}"])
out.append(rec(wrapper("2026-08-21T10:20:01+00:00", pod1), k8s("mw-pretrain", pod1, "main"), {
 "@timestamp": "2026-08-21T10:20:01.123456+00:00", "@version": 1, "host": pod1, "type": "mediawiki",
 "message": "[a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d] /w/api.php?action=query&meta=notifications   Wikimedia\\Rdbms\\DBQueryError: Error 1146: Table 'testwiki.echo_notification' doesn't exist (db1234)",
 "channel": "exception", "level": "ERROR", "monolog_level": 400,
 "url": "/w/api.php?action=query&meta=notifications", "http_method": "GET", "server": "test.wikipedia.org",
 "referrer": None, "phpversion": "8.1.31", "servergroup": "kube-mw-pretrain",
 "normalized_message": "[{reqId}] {exception_url}   Wikimedia\\Rdbms\\DBQueryError: Error {errno}: {errstr}",
 "shard": "s3", "wiki": "testwiki", "mwversion": V, "reqId": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
 "exception": {"class": "Wikimedia\\Rdbms\\DBQueryError", "message": "Error 1146: Table 'testwiki.echo_notification' doesn't exist (db1234)", "code": 1146,
   "file": "%sincludes/libs/rdbms/database/Database.php:1198" % P, "trace": trace1},
 "exception_url": "/w/api.php?action=query&meta=notifications", "caught_by": "entrypoint"}))
# 2. Train jobrunner runs a testwiki job (changeprop caveat): TypeError in core, CentralAuth two frames out.
pod2 = "mw-jobrunner.eqiad.main-69c8d7f5b4-zt6rk"
trace2 = "\n".join([
 "from %sincludes/user/User.php(2315)" % P,
 "#0 %sincludes/user/User.php(2290): MediaWiki\\User\\User->getBlockId()" % P,
 "#1 %sincludes/user/UserFactory.php(181): MediaWiki\\User\\User->load(int)" % P,
 "#2 %sextensions/CentralAuth/includes/User/CentralAuthUser.php(2981): MediaWiki\\User\\UserFactory->newFromName(string)" % P,
 "#3 %sextensions/CentralAuth/includes/GlobalRename/LocalRenameJob/LocalRenameUserJob.php(112): MediaWiki\\Extension\\CentralAuth\\User\\CentralAuthUser->getLocalUser()" % P,
 "#4 %sincludes/jobqueue/Job.php(213): MediaWiki\\Extension\\CentralAuth\\GlobalRename\\LocalRenameJob\\LocalRenameUserJob->doRun()" % P,
 "#5 %sextensions/EventBus/includes/JobExecutor.php(79): MediaWiki\\JobQueue\\Job->run()" % P,
 "#6 /srv/mediawiki/rpc/RunSingleJob.php(60): MediaWiki\\Extension\\EventBus\\JobExecutor->execute(array)",
 "#7 {main}"])
mw2 = {
 "@timestamp": "2026-08-21T10:20:02.5Z", "@version": 1, "host": "mw-jobrunner.eqiad.main-69c8d7f5b4-zt6rk.mediawiki", "type": "mediawiki",
 "message": "[b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e] /rpc/RunSingleJob.php   TypeError: MediaWiki\\User\\User::getBlockId(): Return value must be of type int, string returned",
 "channel": "exception", "level": "ERROR", "monolog_level": 400, "url": "/rpc/RunSingleJob.php", "http_method": "POST",
 "server": "test.wikipedia.org", "phpversion": "8.1.31", "servergroup": "kube-mw-jobrunner",
 "normalized_message": "[{reqId}] {exception_url}   TypeError: MediaWiki\\User\\User::getBlockId(): Return value must be of type int, string returned",
 "shard": "s3", "wiki": "testwiki", "mwversion": V, "reqId": "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e",
 "exception": {"class": "TypeError", "message": "MediaWiki\\User\\User::getBlockId(): Return value must be of type int, string returned", "code": 0,
   "file": "%sincludes/user/User.php:2315" % P, "trace": trace2},
 "exception_url": "/rpc/RunSingleJob.php", "caught_by": "mwe_handler"}
out.append(rec(wrapper("2026-08-21T10:20:02+00:00", pod2), k8s("mw-jobrunner", pod2, "main"), mw2))
# 3. Pretrain debug: a deprecation on the error channel at WARNING: not counted.
pod3 = "mw-pretrain.eqiad.debug-5c7b9d8f6-h4j6k"
out.append(rec(wrapper("2026-08-21T10:20:03+00:00", pod3, "warning"), k8s("mw-pretrain", pod3, "debug"), {
 "@timestamp": "2026-08-21T10:20:03.000001+00:00", "@version": 1, "host": pod3, "type": "mediawiki",
 "message": "[c3d4e5f6-a7b8-4c9d-0e1f-2a3b4c5d6e7f] /wiki/Main_Page   PHP Deprecated: Use of Foo::bar was deprecated in MediaWiki 1.47.",
 "channel": "error", "level": "WARNING", "monolog_level": 300, "url": "/wiki/Main_Page", "server": "test.wikipedia.org",
 "servergroup": "kube-mw-pretrain-debug", "normalized_message": "[{reqId}] {exception_url}   PHP Deprecated: Use of Foo::bar was deprecated in MediaWiki 1.47.",
 "wiki": "testwiki", "mwversion": V, "reqId": "c3d4e5f6-a7b8-4c9d-0e1f-2a3b4c5d6e7f"}))
# 4. Train web: the rdbms channel at ERROR on enwiki (no exception).
pod4 = "mw-web.codfw.main-5f6b8d7c9d-q2w4z"
out.append(rec(wrapper("2026-08-21T10:20:04+00:00", pod4), k8s("mw-web", pod4, "main", "kubernetes2031.codfw.wmnet"), {
 "@timestamp": "2026-08-21T10:20:04.250000+00:00", "@version": 1, "host": pod4, "type": "mediawiki",
 "message": "Wikimedia\\Rdbms\\LoadBalancer::getReaderIndex: all replica DBs lagged. Switch to read-only mode",
 "channel": "rdbms", "level": "ERROR", "monolog_level": 400, "url": "/wiki/Special:Watchlist", "server": "en.wikipedia.org",
 "servergroup": "kube-mw-web", "normalized_message": "{fname}: all replica DBs lagged. Switch to read-only mode",
 "shard": "s1", "wiki": "enwiki", "mwversion": V, "reqId": "d4e5f6a7-b8c9-4d0e-1f2a-3b4c5d6e7f8a", "db_log_category": "lag"}))
# 5. Pretrain canary: memcached at INFO: not counted.
pod5 = "mw-pretrain.eqiad.canary-8c4d5f6b7-m9n8b"
out.append(rec(wrapper("2026-08-21T10:20:05+00:00", pod5, "info"), k8s("mw-pretrain", pod5, "canary"), {
 "@timestamp": "2026-08-21T10:20:05.000000+00:00", "@version": 1, "host": pod5, "type": "mediawiki",
 "message": "MemcachedPeclBagOStuff: key testwiki:page-content-model:42 evicted", "channel": "memcached",
 "level": "INFO", "monolog_level": 200, "server": "test.wikipedia.org", "servergroup": "kube-mw-pretrain-canary",
 "normalized_message": "MemcachedPeclBagOStuff: key {memcached-key} evicted", "wiki": "testwiki", "mwversion": V}))
# 6. Pretrain jobrunner: a php-wmerrors fatal: no wiki, no mwversion, version only in the path.
pod6 = "mw-pretrain.eqiad.jobrunner-7d9f8b6c5-p5r7t"
PN = "/srv/mediawiki/php-1.47.0-wmf.17/"
out.append(rec({"timestamp": "2026-08-21T10:20:06+00:00", "logsource": pod6, "host": pod6, "program": "php8.1-fpm", "severity": "err", "facility": "daemon"},
 k8s("mw-pretrain", pod6, "jobrunner"), {
 "@timestamp": "2026-08-21T10:20:06.777Z", "type": "mediawiki", "channel": "exception", "level": "ERROR",
 "caught_by": "php-wmerrors", "host": pod6, "server": "test.wikipedia.org", "url": "/rpc/RunSingleJob.php", "http_method": "POST",
 "servergroup": "kube-mw-pretrain-jobrunner", "phpversion": "8.1.31", "reqId": "e5f6a7b8-c9d0-4e1f-2a3b-4c5d6e7f8a9b",
 "message": "[e5f6a7b8-c9d0-4e1f-2a3b-4c5d6e7f8a9b] PHP Fatal error: Allowed memory size of 1468006400 bytes exhausted (tried to allocate 20480 bytes) in %sincludes/libs/objectcache/wancache/WANObjectCache.php on line 1502" % PN,
 "normalized_message": "PHP Fatal error: Allowed memory size of 1468006400 bytes exhausted (tried to allocate 20480 bytes) in %sincludes/libs/objectcache/wancache/WANObjectCache.php on line 1502" % PN,
 "exception": {"message": "PHP Fatal error: Allowed memory size of 1468006400 bytes exhausted (tried to allocate 20480 bytes)", "file": "%sincludes/libs/objectcache/wancache/WANObjectCache.php:1502" % PN,
   "trace": "#0 %sincludes/libs/objectcache/wancache/WANObjectCache.php(1502): unserialize(string)\n#1 {main}" % PN}}))
with open("mediawiki-k8s.jsonl", "w") as f:
    for r in out: f.write(r + "\n")
for r in out: json.loads(r)
