package decode

import "bytes"

// internalHost tells whether a request's host is an internal service name
// or address rather than a public wiki host: the Kubernetes services'
// discovery names (mw-jobrunner.discovery.wmnet, where the jobrunners'
// /rpc/RunSingleJob.php and the health checks land), other *.wmnet and
// *.local names, localhost and IP literals. Records on these hosts name no
// wiki (ErrNoWiki); any other host the wiki map lacks is ErrUnknownWiki.
func internalHost(host []byte) bool {
	if i := bytes.LastIndexByte(host, ':'); i > 0 && bytes.IndexByte(host, ']') < i && bytes.Count(host, []byte(":")) == 1 {
		host = host[:i] // host:port
	}
	host = bytes.TrimSuffix(host, []byte("."))
	switch {
	case len(host) == 0:
		return false
	case bytes.HasSuffix(host, []byte(".wmnet")), bytes.HasSuffix(host, []byte(".local")),
		bytes.Equal(host, []byte("localhost")):
		return true
	case host[0] == '[' || bytes.IndexByte(host, ':') >= 0: // IPv6
		return true
	}
	// IPv4: digits and dots only.
	for _, c := range host {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}
