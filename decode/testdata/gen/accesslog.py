# Generates ../accesslog.jsonl (run from testdata/: python3 gen/accesslog.py). See ../README.md.
import json, collections
# httpd part: keys of logformats/httpd-accesslog_ecs_1.7.0.yaml, rendered as
# generate_logformats.py does (sort_keys, separators (", ", ":"), every value a string).
def httpd(ts, domain, path, query, status, dur, bytes_, reqid, handler, method="GET", ua="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"):
    return {
      "ecs.version": "1.7.0", "timestamp": ts, "service.type": "apache2",
      "labels.httpd_server_name": "mediawiki-main", "labels.handler": handler,
      "client.ip": "10.67.136.12", "event.kind": "event", "event.category": ["network", "web"],
      "event.type": ["access", "connection"], "event.outcome": "unknown", "event.dataset": "apache.access",
      "event.duration": str(dur), "http.request.method": method,
      "http.request.referrer": "https://%s/wiki/Main_Page" % domain,
      "http.request.headers.x_forwarded_for": "198.51.100.23, 10.67.136.12",
      "http.request.headers.accept_language": "en-GB,en;q=0.9",
      "http.request.headers.x_analytics": "ns=0;page_id=1;rev_id=660000;loggedIn=1;https=1;client_port=51341",
      "http.request.headers.x_request_id": reqid, "http.request.headers.x_client_ip": "198.51.100.23",
      "http.response.headers.content_type": "text/html; charset=UTF-8", "http.response.status_code": str(status),
      "http.response.bytes": str(bytes_), "http.response.headers.user": "-", "server.ip": "10.67.165.21",
      "source.ip": "10.67.136.12", "url.full": "http://%s%s%s" % (domain, path, query), "url.domain": domain,
      "url.path": path, "url.query": query, "user.name": "-", "user_agent.original": ua,
    }
def envelope(pod, ns, release):
    # rsyslog ecs k8s envelope: nested host.name, orchestrator{...}, labels{deployment, release}
    return collections.OrderedDict([("host", {"name": pod}), ("orchestrator", {"type": "kubernetes", "namespace": ns, "resource": {"name": pod}}), ("labels", {"deployment": ns, "release": release})])
def flat(env, h):
    d = collections.OrderedDict(env)
    for k in sorted(h): d[k] = h[k]
    return json.dumps(d, separators=(", ", ":"))
def nest(env, h, numbers=False):
    d = json.loads(json.dumps(env))
    for k in sorted(h):
        v = h[k]
        if numbers and k in ("http.response.status_code", "event.duration", "http.response.bytes"): v = int(v)
        parts = k.split(".")
        cur = d
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = v
    return json.dumps(d, separators=(", ", ":"))
recs = []
h1 = httpd("2026-08-21T10:15:42", "test.wikipedia.org", "/wiki/Special:RecentChanges", "", 200, 35012, 51234, "2b3f9c0e-5a7d-4c1e-9f6a-0d8e7b6a5c4d", "proxy:unix:/run/shared/fpm-www-8.1.sock|fcgi://localhost")
e1 = envelope("mw-pretrain.eqiad.main-6d8f7c9b5-x7k2p", "mw-pretrain", "main")
recs.append(("flat-pretrain", flat(e1, h1)))
recs.append(("nested-pretrain", nest(e1, h1)))
h2 = httpd("2026-08-21T10:15:43", "en.wikipedia.org", "/w/api.php", "?action=query&format=json&meta=siteinfo", 503, 60000123, 1893, "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f", "proxy:unix:/run/shared/fpm-www-8.1.sock|fcgi://localhost")
e2 = envelope("mw-api-ext.eqiad.main-7b957d95c7-gwrnc", "mw-api-ext", "main")
recs.append(("flat-train-api", flat(e2, h2)))
recs.append(("nested-numbers-mobile", nest(envelope("mw-web.codfw.main-5f6b8d7c9d-q2w4z", "mw-web", "main"), httpd("2026-08-21T10:15:44", "en.m.wikipedia.org", "/wiki/Pretrain", "", 304, 812, 0, "0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d", "-"), numbers=True)))
recs.append(("flat-pretrain-leak", flat(envelope("mw-pretrain.codfw.canary-8c4d5f6b7-m9n8b", "mw-pretrain", "canary"), httpd("2026-08-21T10:15:45", "de.wikipedia.org", "/wiki/Hauptseite", "", 200, 41000, 80211, "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9", "proxy:unix:/run/shared/fpm-www-8.1.sock|fcgi://localhost"))))
recs.append(("flat-train-jobrunner-testwiki", flat(envelope("mw-jobrunner.eqiad.main-69c8d7f5b4-zt6rk", "mw-jobrunner", "main"), httpd("2026-08-21T10:15:46", "test.wikipedia.org", "/rpc/RunSingleJob.php", "", 500, 1200345, 312, "3c4d5e6f-7a8b-4c9d-0e1f-2a3b4c5d6e7f", "proxy:unix:/run/shared/fpm-www-8.1.sock|fcgi://localhost", method="POST", ua="ChangePropagation-JobQueue/WMF"))))
with open("accesslog.jsonl", "w") as f:
    for name, r in recs: f.write(r + "\n")


