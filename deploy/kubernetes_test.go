package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/wikimedia/pretrain-detector/config"
)

// k8sObject is the part of a Kubernetes object the example is checked on.
type k8sObject struct {
	Kind     string                `yaml:"kind"`
	Metadata struct{ Name string } `yaml:"metadata"`
	Data     map[string]string     `yaml:"data"`
	Spec     struct {
		Replicas int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []struct {
					Args  []string `yaml:"args"`
					Ports []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					} `yaml:"ports"`
					LivenessProbe  probe `yaml:"livenessProbe"`
					ReadinessProbe probe `yaml:"readinessProbe"`
					StartupProbe   probe `yaml:"startupProbe"`
					Env            []struct {
						Name  string `yaml:"name"`
						Value string `yaml:"value"`
					} `yaml:"env"`
					Resources struct {
						Limits struct {
							Memory string `yaml:"memory"`
						} `yaml:"limits"`
					} `yaml:"resources"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
		Ports []struct {
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

func loadKubernetes(t *testing.T) map[string]k8sObject {
	t.Helper()
	b, err := os.ReadFile("kubernetes.yaml")
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(false)
	out := map[string]k8sObject{}
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		out[o.Kind] = o
	}
	return out
}

func TestKubernetesExample(t *testing.T) {
	objs := loadKubernetes(t)
	require.Contains(t, objs, "Deployment")
	require.Contains(t, objs, "Service")
	require.Contains(t, objs, "ConfigMap")

	d := objs["Deployment"]
	require.GreaterOrEqual(t, d.Spec.Replicas, 2, "HA: Alertmanager deduplicates the replicas' alerts")
	require.Equal(t, d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
	require.Len(t, d.Spec.Template.Spec.Containers, 1)
	c := d.Spec.Template.Spec.Containers[0]
	require.Equal(t, "run", c.Args[0])
	require.Contains(t, c.Args, "--web.listen-address=:9797", "the documented default port")
	require.Len(t, c.Ports, 1)
	require.Equal(t, 9797, c.Ports[0].ContainerPort)
	for name, p := range map[string]probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		require.Equal(t, c.Ports[0].Name, p.HTTPGet.Port, name)
	}
	require.Equal(t, "/-/healthy", c.LivenessProbe.HTTPGet.Path)
	require.Equal(t, "/-/ready", c.ReadinessProbe.HTTPGet.Path)
	// The daemon derives GOMEMLIMIT from the memory limit
	// (--auto-gomemlimit): the limit must be there, and the flag not
	// turned off or overridden by the environment.
	limit, err := strconv.Atoi(strings.TrimSuffix(c.Resources.Limits.Memory, "Gi"))
	require.NoError(t, err, "limits.memory %q in Gi", c.Resources.Limits.Memory)
	require.Positive(t, limit)
	require.NotContains(t, c.Args, "--no-auto-gomemlimit")
	for _, e := range c.Env {
		require.NotEqual(t, "GOMEMLIMIT", e.Name, "a fixed GOMEMLIMIT would not follow limits.memory")
	}

	s := objs["Service"]
	require.Len(t, s.Spec.Ports, 1)
	require.Equal(t, 9797, s.Spec.Ports[0].Port)
	require.Equal(t, c.Ports[0].Name, s.Spec.Ports[0].TargetPort)
}

// TestKubernetesConfigMapLoads checks that the example configuration is one
// the detector accepts.
func TestKubernetesConfigMapLoads(t *testing.T) {
	cm := loadKubernetes(t)["ConfigMap"]
	y, ok := cm.Data["detector.yml"]
	require.True(t, ok)
	p := filepath.Join(t.TempDir(), "detector.yml")
	require.NoError(t, os.WriteFile(p, []byte(y), 0o600))
	cfg, err := config.Load(p)
	require.NoError(t, err)
	require.Len(t, cfg.Topics(), 3)

	// And so is the annotated example of every key.
	_, err = config.Load("detector.yml")
	require.NoError(t, err)
}
