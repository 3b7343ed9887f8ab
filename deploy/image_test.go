package deploy_test

import (
	"bufio"
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// blubberVariant is the part of a Blubber v4 variant the test reads.
type blubberVariant struct {
	Base       *string  `yaml:"base"`
	Includes   []string `yaml:"includes"`
	Entrypoint []string `yaml:"entrypoint"`
	Copies     []any    `yaml:"copies"`
	Runs       struct {
		UID        *int `yaml:"uid"`
		Insecurely bool `yaml:"insecurely"`
	} `yaml:"runs"`
}

// TestBlubberFile checks .pipeline/blubber.yaml: the BuildKit syntax line
// that selects Blubber, version v4, and the test and production variants,
// production a scratch image holding only the binary and the CA bundle,
// run as a non-root user.
func TestBlubberFile(t *testing.T) {
	b, err := os.ReadFile("../.pipeline/blubber.yaml")
	require.NoError(t, err)
	first, _, _ := bytes.Cut(b, []byte("\n"))
	require.Regexp(t, `^# syntax=docker-registry\.wikimedia\.org/repos/releng/blubber/buildkit:v\d+\.\d+\.\d+$`, string(first))
	var f struct {
		Version  string                    `yaml:"version"`
		Base     *string                   `yaml:"base"`
		Variants map[string]blubberVariant `yaml:"variants"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	require.NoError(t, dec.Decode(&f))
	require.Equal(t, "v4", f.Version)
	require.Contains(t, f.Variants, "test")
	require.Contains(t, f.Variants, "production")
	for name, v := range f.Variants {
		for _, inc := range v.Includes {
			require.Contains(t, f.Variants, inc, "variant %s includes an unknown variant", name)
		}
	}

	test := f.Variants["test"]
	require.Equal(t, []string{"go", "test", "./..."}, test.Entrypoint)

	prod := f.Variants["production"]
	require.Nil(t, f.Base, "no top-level base: production would inherit it")
	require.Nil(t, prod.Base, "production is a scratch image")
	require.Empty(t, prod.Includes)
	require.False(t, prod.Runs.Insecurely)
	require.NotNil(t, prod.Runs.UID)
	require.Positive(t, *prod.Runs.UID, "production runs as a non-root user")
	var dests []string
	for _, c := range prod.Copies {
		m, ok := c.(map[string]any)
		require.True(t, ok, "production copies named files, not a whole variant: %v", c)
		require.Contains(t, f.Variants, m["from"])
		dests = append(dests, m["destination"].(string))
	}
	require.ElementsMatch(t, []string{"/usr/bin/pretrain-detector", "/etc/ssl/certs/ca-certificates.crt"}, dests)
	require.Equal(t, []string{"/usr/bin/pretrain-detector"}, prod.Entrypoint)
}

// TestDockerfile checks that the Dockerfile builds the same image as the
// production variant: scratch, the binary and the CA bundle, a non-root
// user, the same entrypoint.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	require.NoError(t, err)
	var stages []string
	var final []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			stages = append(stages, line)
			final = nil
			continue
		}
		final = append(final, line)
	}
	require.NoError(t, sc.Err())
	require.GreaterOrEqual(t, len(stages), 2)
	require.Equal(t, "FROM scratch", stages[len(stages)-1])
	var copies []string
	for _, l := range final {
		if dest, ok := strings.CutPrefix(l, "COPY "); ok {
			f := strings.Fields(dest)
			copies = append(copies, f[len(f)-1])
		}
	}
	require.ElementsMatch(t, []string{"/usr/bin/pretrain-detector", "/etc/ssl/certs/ca-certificates.crt"}, copies)
	require.True(t, slices.ContainsFunc(final, regexp.MustCompile(`^USER [1-9][0-9]*(:[0-9]+)?$`).MatchString), "a numeric non-root USER")
	require.Contains(t, final, `ENTRYPOINT ["/usr/bin/pretrain-detector"]`)
}
