package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads and validates a config file. Keys absent from the file keep
// their defaults; unknown keys are errors.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config file: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	c.resolvePaths(filepath.Dir(path))
	return c, nil
}

// Parse parses YAML over the defaults and validates the result.
func Parse(b []byte) (Config, error) {
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty file is all defaults: yaml.v3 reports it as io.EOF.
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, yamlError(err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

var yamlFieldRe = regexp.MustCompile(`field (\S+) not found in type config\.(\w+)`)

// yamlError rewrites yaml.v3's type-oriented messages into ones naming the
// offending key, which is what a person editing the file needs.
func yamlError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("parse: %w", err)
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := yamlFieldRe.FindStringSubmatch(e); m != nil {
			e = strings.Replace(e, m[0], fmt.Sprintf("unknown field %q in %s", m[1], sectionName(m[2])), 1)
		}
		msgs = append(msgs, e)
	}
	return errors.New(strings.Join(msgs, "; "))
}

func sectionName(typ string) string {
	switch typ {
	case "Config":
		return "the top level"
	case "Cluster":
		return "kafka.clusters[]"
	case "Topic":
		return "kafka.clusters[].topics[]"
	case "DeployMarker":
		return "deploys[]"
	case "PathRule":
		return "classifier.paths[]"
	case "AlertmanagerSet", "plain":
		return "alerting.alertmanagers[]"
	case "DeployMarkers":
		return "deploy_markers"
	}
	return strings.ToLower(typ)
}

func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.Kafka.Clusters {
		cl := &c.Kafka.Clusters[i]
		abs(&cl.TLS.CAFile)
		abs(&cl.TLS.CertFile)
		abs(&cl.TLS.KeyFile)
		abs(&cl.SASL.PasswordFile)
	}
	abs(&c.Wikis.MediaWikiConfigDir)
	for i := range c.Alerting.Alertmanagers {
		c.Alerting.Alertmanagers[i].HTTPClientConfig.SetDirectory(dir)
	}
}
