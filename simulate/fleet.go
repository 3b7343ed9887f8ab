package simulate

import (
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Deployments (Kubernetes namespace = deployment) and releases. The train
// fleet serves every wiki but testwiki; mw-pretrain serves testwiki
// (operations-deployment-charts helmfile.d/services/mw-pretrain).
const (
	depWeb = iota
	depAPIExt
	depAPIInt
	depParsoid
	depJobrunner
	depPretrainMain
	depPretrainCanary
	depPretrainJobrunner
	depPretrainDebug // the debug release: any wiki, for developers sending the debug header
	numDeps
)

type deployment struct {
	namespace   string // also labels.deployment
	release     string
	servergroup string // php.servergroup: logged as servergroup
	vhost       string // ServerName of jobrunner vhosts, logged as server; "" = the wiki's host
	pretrain    bool
	podsPerDC   int
	pods        [][]pod // per DC, renewed by every rollout
}

// pod is one MediaWiki pod. Strings are pre-rendered for the encoder.
type pod struct {
	name string // "<deployment>.<dc>.<release>-<replicaset hash>-<suffix>"
	node string // kubernetes.host
	ip   string // server.ip
}

// newDeployments returns the deployments with their pod counts: a sample of
// the real fleet (mw-web has hundreds of pods per DC), but the real
// mw-pretrain sizes: main 2, canary 1 (routed via main), jobrunner 1.
func newDeployments() [numDeps]deployment {
	return [numDeps]deployment{
		depWeb:               {namespace: "mw-web", release: "main", servergroup: "kube-mw-web", podsPerDC: 48},
		depAPIExt:            {namespace: "mw-api-ext", release: "main", servergroup: "kube-mw-api-ext", podsPerDC: 32},
		depAPIInt:            {namespace: "mw-api-int", release: "main", servergroup: "kube-mw-api-int", podsPerDC: 24},
		depParsoid:           {namespace: "mw-parsoid", release: "main", servergroup: "kube-mw-parsoid", podsPerDC: 16},
		depJobrunner:         {namespace: "mw-jobrunner", release: "main", servergroup: "kube-mw-jobrunner", vhost: "mw-jobrunner.discovery.wmnet", podsPerDC: 24},
		depPretrainMain:      {namespace: "mw-pretrain", release: "main", servergroup: "kube-mw-pretrain", pretrain: true, podsPerDC: 2},
		depPretrainCanary:    {namespace: "mw-pretrain", release: "canary", servergroup: "kube-mw-pretrain-canary", pretrain: true, podsPerDC: 1},
		depPretrainJobrunner: {namespace: "mw-pretrain", release: "jobrunner", servergroup: "kube-mw-pretrain-jobrunner", vhost: "mw-pretrain-jobrunner.discovery.wmnet", pretrain: true, podsPerDC: 1},
		depPretrainDebug:     {namespace: "mw-pretrain", release: "debug", servergroup: "kube-mw-pretrain-debug", pretrain: true, podsPerDC: 1},
	}
}

// k8sAlphabet is the alphabet of Kubernetes generated name suffixes
// (k8s.io/apimachinery rand.SafeEncodeString): no vowels, no 0/1/3.
const k8sAlphabet = "bcdfghjklmnpqrstvwxz2456789"

func randK8s(rng *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(k8sAlphabet[rng.IntN(len(k8sAlphabet))])
	}
	return b.String()
}

// rollout replaces every pod of d: a new ReplicaSet (pod-template hash) and
// new pod suffixes, as a deploy does.
func (d *deployment) rollout(rng *rand.Rand, dcs []string) {
	hash := randK8s(rng, 9+rng.IntN(2))
	d.pods = make([][]pod, len(dcs))
	for i, dc := range dcs {
		d.pods[i] = make([]pod, d.podsPerDC)
		for j := range d.pods[i] {
			d.pods[i][j] = pod{
				name: d.namespace + "." + dc + "." + d.release + "-" + hash + "-" + randK8s(rng, 5),
				node: "wikikube-worker" + strconv.Itoa((i+1)*1000+1+rng.IntN(300)) + "." + dc + ".wmnet",
				ip:   "10." + strconv.Itoa(64+i%3*64+rng.IntN(4)) + "." + strconv.Itoa(rng.IntN(256)) + "." + strconv.Itoa(1+rng.IntN(254)),
			}
		}
	}
}

// wikiInfo is a wiki's pre-rendered strings and mutable train version.
type wikiInfo struct {
	id        wikimap.ID
	dbname    string
	host      string
	shard     string
	group     string
	vhost     string // labels.httpd_server_name
	lang      string // Accept-Language
	dbServers [3]string
	ver       int // index into the generator's versions: the train version serving it now
}

func (w *wikiInfo) dbServer(n uint32) string { return w.dbServers[n%3] }

func newWikiInfo(w *wikimap.Wiki) wikiInfo {
	fam := w.Family
	if fam == "" {
		fam = "wikimedia"
	}
	lang := "en-US,en;q=0.9"
	if i := strings.IndexByte(w.Host, '.'); i > 0 && i <= 3 && w.Family != "" && w.Family != "wikidata" {
		lang = w.Host[:i] + ",en;q=0.7"
	}
	info := wikiInfo{
		id: w.ID, dbname: w.DBName, host: w.Host, shard: w.Section, group: w.Group,
		vhost: "www." + fam + ".org", lang: lang,
	}
	// Three replicas per section, numbered like eqiad's db1xxx hosts.
	sec := 3
	if len(w.Section) == 2 && w.Section[0] == 's' {
		sec = int(w.Section[1] - '0')
	}
	for i := range info.dbServers {
		info.dbServers[i] = "db1" + strconv.Itoa(100+sec*17+i*5)
	}
	return info
}

// versionInfo is one MediaWiki version as logged and as a path root.
type versionInfo struct {
	name string // "1.47.0-wmf.16"
	root string // "/srv/mediawiki/php-1.47.0-wmf.16/"
}

func newVersion(name string) versionInfo {
	return versionInfo{name: name, root: "/srv/mediawiki/php-" + name + "/"}
}

// bumpVersion returns the next train branch: "1.47.0-wmf.16" → "1.47.0-wmf.17".
func bumpVersion(v string) string {
	i := strings.LastIndexByte(v, '.')
	if i < 0 {
		return v + ".1"
	}
	n, err := strconv.Atoi(v[i+1:])
	if err != nil {
		return v + ".1"
	}
	return v[:i+1] + strconv.Itoa(n+1)
}

// pretrainVersion is what wmf/next logs as mwversion: master's version,
// "1.47.0-alpha" while the train runs 1.47.0-wmf.N.
func pretrainVersion(train string) string {
	if i := strings.Index(train, "-wmf"); i > 0 {
		return train[:i] + "-alpha"
	}
	return train + "-alpha"
}
