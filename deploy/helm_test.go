package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/wikimedia/pretrain-detector/alert/amtest"
	"github.com/wikimedia/pretrain-detector/config"
)

const (
	chartDir    = "helm/pretrain-detector"
	helmfileDir = "helmfile.d/services/pretrain-detector"
)

func helm(t *testing.T) string {
	return amtest.Tool(t, "helm", "DETECTOR_REQUIRE_HELM", "go install helm.sh/helm/v3/cmd/helm@v3.22.0")
}

// valueSets are the values the chart is checked with: its defaults, and
// each site's helmfile.d values over a stand-in for the deployment
// server's general values.
func valueSets() map[string][]string {
	sets := map[string][]string{"defaults": nil}
	for _, site := range []string{"eqiad", "codfw"} {
		sets[site] = []string{
			"-f", "helmfile.d/general-" + site + ".example.yaml",
			"-f", helmfileDir + "/values.yaml",
			"-f", helmfileDir + "/values-" + site + ".yaml",
		}
	}
	return sets
}

// object is a rendered Kubernetes object; the tests read it through the
// typed views below.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec yaml.Node         `yaml:"spec"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type deploymentSpec struct {
	Replicas int `yaml:"replicas"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Spec struct {
			SecurityContext struct {
				RunAsNonRoot *bool `yaml:"runAsNonRoot"`
				RunAsUser    *int  `yaml:"runAsUser"`
			} `yaml:"securityContext"`
			Containers []struct {
				Image string   `yaml:"image"`
				Args  []string `yaml:"args"`
				Env   []struct {
					Name string `yaml:"name"`
				} `yaml:"env"`
				Ports []struct {
					Name          string `yaml:"name"`
					ContainerPort int    `yaml:"containerPort"`
				} `yaml:"ports"`
				LivenessProbe   probe                                        `yaml:"livenessProbe"`
				ReadinessProbe  probe                                        `yaml:"readinessProbe"`
				StartupProbe    probe                                        `yaml:"startupProbe"`
				Resources       struct{ Requests, Limits map[string]string } `yaml:"resources"`
				SecurityContext struct {
					RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
					ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
					AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
					Capabilities             struct {
						Drop []string `yaml:"drop"`
					} `yaml:"capabilities"`
				} `yaml:"securityContext"`
				VolumeMounts []struct {
					Name      string `yaml:"name"`
					MountPath string `yaml:"mountPath"`
				} `yaml:"volumeMounts"`
			} `yaml:"containers"`
			Volumes []struct {
				Name      string `yaml:"name"`
				ConfigMap *struct {
					Name string `yaml:"name"`
				} `yaml:"configMap"`
				Secret *struct {
					SecretName string `yaml:"secretName"`
				} `yaml:"secret"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

type servicePort struct {
	Port       int    `yaml:"port"`
	TargetPort string `yaml:"targetPort"`
}

type netpolPort struct {
	Port     int    `yaml:"port"`
	Protocol string `yaml:"protocol"`
}

type networkPolicySpec struct {
	PolicyTypes []string `yaml:"policyTypes"`
	Ingress     []struct {
		From  []any        `yaml:"from"`
		Ports []netpolPort `yaml:"ports"`
	} `yaml:"ingress"`
	Egress []struct {
		To []struct {
			IPBlock struct {
				CIDR string `yaml:"cidr"`
			} `yaml:"ipBlock"`
		} `yaml:"to"`
		Ports []netpolPort `yaml:"ports"`
	} `yaml:"egress"`
}

// render runs helm template and returns the objects by kind.
func render(t *testing.T, bin string, args ...string) map[string][]object {
	t.Helper()
	out := run(t, bin, append([]string{"template", "main", chartDir}, args...)...)
	dec := yaml.NewDecoder(strings.NewReader(out))
	objs := map[string][]object{}
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if o.Kind != "" {
			objs[o.Kind] = append(objs[o.Kind], o)
		}
	}
	return objs
}

func one[T any](t *testing.T, objs map[string][]object, kind string) (object, T) {
	t.Helper()
	require.Len(t, objs[kind], 1, "one %s", kind)
	var spec T
	require.NoError(t, objs[kind][0].Spec.Decode(&spec))
	return objs[kind][0], spec
}

func TestHelmLint(t *testing.T) {
	bin := helm(t)
	for name, args := range valueSets() {
		t.Run(name, func(t *testing.T) {
			out := run(t, bin, append([]string{"lint", "--strict", chartDir}, args...)...)
			require.Contains(t, out, "1 chart(s) linted, 0 chart(s) failed")
		})
	}
}

// TestChartObjects renders the chart with each value set and checks what
// running the detector safely needs.
func TestChartObjects(t *testing.T) {
	bin := helm(t)
	for name, args := range valueSets() {
		t.Run(name, func(t *testing.T) {
			objs := render(t, bin, args...)
			_, d := one[deploymentSpec](t, objs, "Deployment")
			require.GreaterOrEqual(t, d.Replicas, 2, "HA: Alertmanager deduplicates the replicas' alerts")
			for k, v := range d.Selector.MatchLabels {
				require.Equal(t, v, d.Template.Metadata.Labels[k], "the selector matches the pods")
			}
			pod := d.Template.Spec
			require.Len(t, pod.Containers, 1)
			c := pod.Containers[0]
			require.Equal(t, "run", c.Args[0])
			require.True(t, strings.HasPrefix(c.Image, "docker-registry.wikimedia.org/"), c.Image)
			require.Len(t, c.Ports, 1)
			require.Equal(t, 9797, c.Ports[0].ContainerPort, "the documented default port")
			require.Contains(t, c.Args, "--web.listen-address=:9797")

			// Probes on the web port.
			for probeName, p := range map[string]probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
				require.Equal(t, c.Ports[0].Name, p.HTTPGet.Port, probeName)
			}
			require.Equal(t, "/-/healthy", c.LivenessProbe.HTTPGet.Path)
			require.Equal(t, "/-/ready", c.ReadinessProbe.HTTPGet.Path)

			// The memory limit --auto-gomemlimit reads; nothing overrides it.
			require.NotEmpty(t, c.Resources.Limits["memory"], "limits.memory")
			require.NotEmpty(t, c.Resources.Requests["memory"], "requests.memory")
			require.NotEmpty(t, c.Resources.Requests["cpu"], "requests.cpu")
			require.NotContains(t, c.Args, "--no-auto-gomemlimit")
			for _, e := range c.Env {
				require.NotEqual(t, "GOMEMLIMIT", e.Name, "a fixed GOMEMLIMIT would not follow limits.memory")
			}

			// Non-root, read-only, no privileges.
			sc := c.SecurityContext
			require.True(t, (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot), "runAsNonRoot")
			require.NotNil(t, pod.SecurityContext.RunAsUser)
			require.Positive(t, *pod.SecurityContext.RunAsUser)
			require.NotNil(t, sc.ReadOnlyRootFilesystem)
			require.True(t, *sc.ReadOnlyRootFilesystem, "readOnlyRootFilesystem")
			require.NotNil(t, sc.AllowPrivilegeEscalation)
			require.False(t, *sc.AllowPrivilegeEscalation)
			require.Equal(t, []string{"ALL"}, sc.Capabilities.Drop)

			// The config file the args name is the ConfigMap's detector.yml.
			cm, _ := one[any](t, objs, "ConfigMap")
			cfgArg := ""
			for _, a := range c.Args {
				if v, ok := strings.CutPrefix(a, "--config.file="); ok {
					cfgArg = v
				}
			}
			require.Equal(t, "detector.yml", filepath.Base(cfgArg))
			mounted := false
			for _, m := range c.VolumeMounts {
				if m.MountPath == filepath.Dir(cfgArg) {
					for _, v := range pod.Volumes {
						mounted = mounted || (v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name)
					}
				}
			}
			require.True(t, mounted, "%s is not the ConfigMap %s", cfgArg, cm.Metadata.Name)
			p := filepath.Join(t.TempDir(), "detector.yml")
			require.NoError(t, os.WriteFile(p, []byte(cm.Data["detector.yml"]), 0o600))
			_, err := config.Load(p)
			require.NoError(t, err, "the rendered detector.yml:\n%s", cm.Data["detector.yml"])

			// Scraped by annotation.
			ann := d.Template.Metadata.Annotations
			require.Equal(t, "true", ann["prometheus.io/scrape"])
			require.Equal(t, "9797", ann["prometheus.io/port"])
			require.Len(t, ann["checksum/config"], 64)

			_, svc := one[struct {
				Ports []servicePort `yaml:"ports"`
			}](t, objs, "Service")
			require.Equal(t, []servicePort{{Port: 9797, TargetPort: c.Ports[0].Name}}, svc.Ports)

			// Ingress to the web port only; egress only where the values say.
			_, np := one[networkPolicySpec](t, objs, "NetworkPolicy")
			require.ElementsMatch(t, []string{"Ingress", "Egress"}, np.PolicyTypes)
			require.Len(t, np.Ingress, 1)
			require.Empty(t, np.Ingress[0].From)
			require.Equal(t, []netpolPort{{Port: 9797, Protocol: "TCP"}}, np.Ingress[0].Ports)
			var kafka, am []string
			for _, e := range np.Egress {
				if len(e.To) == 0 {
					// Only name resolution may go anywhere.
					require.NotEmpty(t, e.Ports)
					for _, port := range e.Ports {
						require.Equal(t, 53, port.Port, "egress to any address on port %d", port.Port)
					}
					continue
				}
				require.NotEmpty(t, e.Ports, "egress to %v on every port", e.To)
				ports := []int{}
				for _, port := range e.Ports {
					ports = append(ports, port.Port)
				}
				for _, to := range e.To {
					pfx, err := netip.ParsePrefix(to.IPBlock.CIDR)
					require.NoError(t, err)
					require.GreaterOrEqual(t, pfx.Bits(), 24, "egress to a whole network %s", pfx)
					switch {
					case slices.Equal(ports, []int{9092, 9093}):
						kafka = append(kafka, to.IPBlock.CIDR)
					case slices.Equal(ports, []int{9093}):
						am = append(am, to.IPBlock.CIDR)
					default:
						t.Fatalf("egress to %s on ports %v", to.IPBlock.CIDR, ports)
					}
				}
			}
			if name == "defaults" {
				require.Empty(t, kafka)
				require.Empty(t, am)
				return
			}
			var general struct {
				KafkaBrokers map[string][]string `yaml:"kafka_brokers"`
			}
			b, err := os.ReadFile("helmfile.d/general-" + name + ".example.yaml")
			require.NoError(t, err)
			require.NoError(t, yaml.Unmarshal(b, &general))
			require.ElementsMatch(t, general.KafkaBrokers["logging-"+name], kafka, "the brokers of the site's logging cluster")
			require.Len(t, am, 2, "both sites' Alertmanagers")
			alertmanagers := 0
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--alertmanager.url=") {
					alertmanagers++
				}
			}
			require.Equal(t, 2, alertmanagers)
		})
	}
}

// TestChartChecksums: the pods restart when, and only when, the files they
// read change. A new config changes checksum/config; a new secret changes
// checksum/secrets and mounts the Secret; another release name (new object
// names and labels, same data) changes neither.
func TestChartChecksums(t *testing.T) {
	bin := helm(t)
	base := valueSets()["eqiad"]
	annotations := func(args ...string) (map[string]string, map[string][]object) {
		objs := render(t, bin, append(slices.Clone(base), args...)...)
		_, d := one[deploymentSpec](t, objs, "Deployment")
		return d.Template.Metadata.Annotations, objs
	}
	before, objs := annotations()
	require.Empty(t, objs["Secret"], "no secret without secrets")

	after, _ := annotations("--set", "detector.config.detect.alpha=0.0005")
	require.NotEqual(t, before["checksum/config"], after["checksum/config"], "a config change must restart the pods")
	require.Equal(t, before["checksum/secrets"], after["checksum/secrets"])

	same := run(t, bin, append([]string{"template", "other", chartDir}, base...)...)
	require.Contains(t, same, "checksum/config: "+before["checksum/config"], "metadata alone must not restart the pods")

	secret, objs := annotations("--set", "secrets.kafka-sasl-password=s3cret")
	require.Equal(t, before["checksum/config"], secret["checksum/config"])
	require.NotEqual(t, before["checksum/secrets"], secret["checksum/secrets"], "a secret change must restart the pods")
	require.Len(t, objs["Secret"], 1)
	_, d := one[deploymentSpec](t, objs, "Deployment")
	mounted := false
	for _, v := range d.Template.Spec.Volumes {
		mounted = mounted || (v.Secret != nil && v.Secret.SecretName == objs["Secret"][0].Metadata.Name)
	}
	require.True(t, mounted, "the Secret is mounted")
}

// TestChartArgsStartTheDetector starts the detector built from this tree
// with the arguments and the config file the chart renders for eqiad (the
// listen address and the brokers swapped for local ones): every flag must
// parse and the configuration load, so the start fails only where it
// should, at the unreachable broker.
func TestChartArgsStartTheDetector(t *testing.T) {
	hb := helm(t)
	objs := render(t, hb, valueSets()["eqiad"]...)
	cm, _ := one[any](t, objs, "ConfigMap")
	_, d := one[deploymentSpec](t, objs, "Deployment")
	cfgFile := filepath.Join(t.TempDir(), "detector.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cm.Data["detector.yml"]), 0o600))
	var args []string
	for _, a := range d.Template.Spec.Containers[0].Args {
		switch {
		case strings.HasPrefix(a, "--config.file="):
			a = "--config.file=" + cfgFile
		case strings.HasPrefix(a, "--web.listen-address="):
			a = "--web.listen-address=127.0.0.1:0"
		case strings.HasPrefix(a, "--log.level="):
			a = "--log.level=error"
		}
		args = append(args, a)
	}
	args = append(args, "--kafka.brokers=127.0.0.1:1")
	cmd := exec.CommandContext(t.Context(), detectorBinary(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "stderr: %s", &stderr)
	require.Equal(t, 1, exit.ExitCode(), "1 is a run error; 2 would be a flag error: %s", &stderr)
	require.Contains(t, stderr.String(), "no broker reachable")
}
