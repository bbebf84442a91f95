// Package deploy_test checks the files in deploy/ against the code: every
// file parses, every metric the alerts and the dashboard query is registered
// by the metrics package, the probe and scrape paths are served by the real
// binary, the ports agree with the config, and every command line is one the
// binary accepts.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/statusbridge/statusbridge/metrics"
)

// shutdownGrace is the longest a clean shutdown takes: the HTTP drain
// (15 s, main.go) and then in-flight deliveries (10 s,
// outbound.Policy.ShutdownGrace). Stop timeouts must be longer.
const shutdownGrace = 25 * time.Second

// ---- the binary ----------------------------------------------------------

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds statusbridge once for the whole test binary.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "statusbridge-deploy-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "statusbridge")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Dir = ".." // the module root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// ---- parsing every file --------------------------------------------------

// docs holds every parsed file of deploy/, by path relative to it.
type docs struct {
	yaml map[string][]map[string]any // YAML documents of each .yaml file
	raw  map[string][]byte
}

var (
	loadOnce sync.Once
	loaded   docs
	loadErr  error
)

// load parses every file under deploy/ (except Go files): YAML (every
// document), JSON, systemd units and env files. An unknown kind of file is
// an error, so nothing lands here unchecked.
func load(t *testing.T) docs {
	t.Helper()
	loadOnce.Do(func() {
		loaded = docs{yaml: map[string][]map[string]any{}, raw: map[string][]byte{}}
		loadErr = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(path, ".go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			loaded.raw[path] = b
			switch ext := filepath.Ext(path); {
			case ext == ".yaml" || ext == ".yml":
				dec := yaml.NewDecoder(bytes.NewReader(b))
				for {
					var doc map[string]any
					if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
						break
					} else if err != nil {
						return fmt.Errorf("%s: %w", path, err)
					}
					if doc != nil {
						loaded.yaml[path] = append(loaded.yaml[path], doc)
					}
				}
				if len(loaded.yaml[path]) == 0 {
					return fmt.Errorf("%s: no YAML document", path)
				}
			case ext == ".json":
				var v any
				if err := json.Unmarshal(b, &v); err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
			case ext == ".service":
				if _, err := parseUnit(b); err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
			case strings.HasSuffix(path, ".env.example"):
				if _, err := parseEnvFile(b); err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
			default:
				return fmt.Errorf("%s: no check knows this kind of file; add one to deploy_test.go", path)
			}
			return nil
		})
	})
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	return loaded
}

func TestEveryFileParses(t *testing.T) {
	d := load(t)
	for _, want := range []string{
		"kubernetes/deployment.yaml", "kubernetes/service.yaml", "kubernetes/configmap.yaml",
		"systemd/statusbridge.service", "prometheus/alerts.yaml", "grafana/statusbridge.json",
	} {
		if _, ok := d.raw[want]; !ok {
			t.Errorf("deploy/%s is missing", want)
		}
	}
}

// unit is a systemd unit: section → key → values (keys may repeat).
type unit map[string]map[string][]string

func parseUnit(b []byte) (unit, error) {
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				return nil, fmt.Errorf("line %d: want Key=Value inside a [Section]: %q", n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u, sc.Err()
}

func parseEnvFile(b []byte) (map[string]string, error) {
	env := map[string]string{}
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !envName.MatchString(k) {
			return nil, fmt.Errorf("line %d: want NAME=value: %q", n+1, line)
		}
		env[k] = v
	}
	return env, nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ---- metrics -------------------------------------------------------------

// registered returns the metric families the metrics package exposes
// (name → type), with every setter called once so labelled families show.
func registered(t *testing.T) map[string]string {
	t.Helper()
	m := metrics.New(func() (map[string]metrics.OutboxStat, error) {
		return map[string]metrics.OutboxStat{"expertsender": {Pending: 1, OldestCreate: time.Now()}}, nil
	})
	m.Webhook("accepted")
	m.Stored(time.Millisecond)
	m.Commit(1, time.Millisecond)
	m.Event("dispatched")
	m.Attempt("expertsender", "done", time.Millisecond)
	m.Reload(true)
	m.SetSender(true)
	m.SetCircuitOpen("expertsender", false)
	m.SetMappingVersion("0123456789ab")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	types := map[string]string{}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	if len(types) < 10 {
		t.Fatalf("only %d metric families gathered:\n%s", len(types), rec.Body.String())
	}
	return types
}

// metricRef finds metric names in PromQL: statusbridge's own and the Go
// and process collectors'.
var metricRef = regexp.MustCompile(`\b(?:statusbridge|process|go)_[a-zA-Z0-9_]*[a-zA-Z0-9]`)

// checkMetrics reports every metric an expression names that the registry
// lacks (a histogram's _bucket, _sum and _count count as the histogram).
func checkMetrics(t *testing.T, where, expr string, types map[string]string) {
	t.Helper()
	if len(metricRef.FindAllString(expr, -1)) == 0 {
		t.Errorf("%s: %q names no statusbridge metric", where, expr)
	}
	for _, name := range metricRef.FindAllString(expr, -1) {
		if _, ok := types[name]; ok {
			continue
		}
		found := false
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok && (types[base] == "histogram" || (suf != "_bucket" && types[base] == "summary")) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: %s is not a metric statusbridge exposes (%q)", where, name, expr)
		}
	}
	if err := balanced(expr); err != nil {
		t.Errorf("%s: %q: %v", where, expr, err)
	}
}

// balanced checks brackets and quotes, a cheap guard against broken PromQL.
func balanced(expr string) error {
	var stack []rune
	pairs := map[rune]rune{')': '(', '}': '{', ']': '['}
	inQuote := rune(0)
	for i, r := range expr {
		switch {
		case inQuote != 0:
			if r == inQuote && (i == 0 || expr[i-1] != '\\') {
				inQuote = 0
			}
		case r == '"' || r == '\'' || r == '`':
			inQuote = r
		case r == '(' || r == '{' || r == '[':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return fmt.Errorf("unbalanced %q at byte %d", r, i)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if inQuote != 0 || len(stack) > 0 {
		return errors.New("unclosed bracket or quote")
	}
	return nil
}

var promDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

func TestAlertRules(t *testing.T) {
	d := load(t)
	types := registered(t)
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(d.raw["prometheus/alerts.yaml"]))
	dec.KnownFields(true) // a misspelt rule field is an error, as in Prometheus
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("prometheus/alerts.yaml: %v", err)
	}
	var exprs []string
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("group %s: a rule without alert or expr: %+v", g.Name, r)
			}
			if r.For != "" && !promDuration.MatchString(r.For) {
				t.Errorf("%s: for %q is not a Prometheus duration", where, r.For)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", where, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary annotation", where)
			}
			checkMetrics(t, where, r.Expr, types)
			exprs = append(exprs, r.Expr)
		}
	}
	// The situations the alerts must cover, by the metric each watches.
	for _, want := range []string{
		"statusbridge_outbox_oldest_pending_seconds) > 600", // oldest pending delivery older than 10 minutes
		`statusbridge_delivery_attempts_total{result="dead"}`,
		"statusbridge_circuit_open",
		`statusbridge_webhooks_total{outcome="store_error"}`, // answered 503
		"statusbridge_sender",
	} {
		if !slices.ContainsFunc(exprs, func(e string) bool { return strings.Contains(e, want) }) {
			t.Errorf("no alert expression contains %q", want)
		}
	}
}

func TestDashboardQueries(t *testing.T) {
	d := load(t)
	types := registered(t)
	var dash map[string]any
	if err := json.Unmarshal(d.raw["grafana/statusbridge.json"], &dash); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || (k == "query" && strings.Contains(path, "templating"))) && strings.Contains(s, "_") {
					exprs = append(exprs, s)
				}
				walk(path+"."+k, x)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), x)
			}
		}
	}
	walk("", dash)
	if len(exprs) < 10 {
		t.Fatalf("the dashboard has %d queries, want a panel for each area", len(exprs))
	}
	for _, e := range exprs {
		checkMetrics(t, "dashboard", e, types)
	}
	// Each statusbridge family appears on the dashboard.
	for name := range types {
		if !strings.HasPrefix(name, "statusbridge_") {
			continue
		}
		if !slices.ContainsFunc(exprs, func(e string) bool { return strings.Contains(e, name) }) {
			t.Errorf("no dashboard panel shows %s", name)
		}
	}
	ids := map[float64]bool{}
	for _, p := range dash["panels"].([]any) {
		id := p.(map[string]any)["id"].(float64)
		if ids[id] {
			t.Errorf("panel id %v is used twice", id)
		}
		ids[id] = true
	}
}

// ---- Kubernetes ----------------------------------------------------------

type container struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom struct {
			SecretKeyRef struct {
				Name     string `yaml:"name"`
				Key      string `yaml:"key"`
				Optional bool   `yaml:"optional"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	Lifecycle      struct {
		PreStop struct {
			Sleep struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type deployment struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Replicas int `yaml:"replicas"`
		Template struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds int         `yaml:"terminationGracePeriodSeconds"`
				Containers                    []container `yaml:"containers"`
				Volumes                       []struct {
					Name      string `yaml:"name"`
					ConfigMap struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// decodeKind finds the one document of kind in deploy/kubernetes and
// decodes it into v.
func decodeKind(t *testing.T, d docs, kind string, v any) {
	t.Helper()
	var found []map[string]any
	for path, ds := range d.yaml {
		if !strings.HasPrefix(path, "kubernetes/") {
			continue
		}
		for _, doc := range ds {
			if doc["kind"] == kind {
				found = append(found, doc)
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("deploy/kubernetes has %d documents of kind %s, want 1", len(found), kind)
	}
	b, err := yaml.Marshal(found[0])
	if err == nil {
		err = yaml.Unmarshal(b, v)
	}
	if err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
}

type k8s struct {
	dep       deployment
	c         container
	configMap struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Data map[string]string `yaml:"data"`
	}
	service struct {
		Spec struct {
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				Port       int `yaml:"port"`
				TargetPort any `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	secret struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		StringData map[string]string `yaml:"stringData"`
	}
	configPath string // the --config argument
	config     string // the ConfigMap's file it names
}

func loadK8s(t *testing.T) *k8s {
	t.Helper()
	d := load(t)
	k := &k8s{}
	decodeKind(t, d, "Deployment", &k.dep)
	decodeKind(t, d, "ConfigMap", &k.configMap)
	decodeKind(t, d, "Service", &k.service)
	decodeKind(t, d, "Secret", &k.secret)
	if n := len(k.dep.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", n)
	}
	k.c = k.dep.Spec.Template.Spec.Containers[0]
	args := k.c.Args
	i := slices.Index(args, "--config")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("the container's args %q have no --config FILE", args)
	}
	k.configPath = args[i+1]
	var ok bool
	if k.config, ok = k.configMap.Data[filepath.Base(k.configPath)]; !ok {
		t.Fatalf("--config %s: the ConfigMap has no key %s (keys: %v)", k.configPath, filepath.Base(k.configPath), keys(k.configMap.Data))
	}
	return k
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (k *k8s) port(t *testing.T, ref any) int {
	t.Helper()
	switch ref := ref.(type) {
	case int:
		return ref
	case string:
		for _, p := range k.c.Ports {
			if p.Name == ref {
				return p.ContainerPort
			}
		}
		t.Errorf("port %q is not a named port of the container", ref)
	default:
		t.Errorf("port %v is neither a number nor a name", ref)
	}
	return 0
}

func TestKubernetesDeployment(t *testing.T) {
	k := loadK8s(t)
	spec := k.dep.Spec.Template.Spec
	if k.dep.Spec.Replicas != 2 {
		t.Errorf("replicas = %d, want 2", k.dep.Spec.Replicas)
	}
	// The config's listen port is the container's, the Service's target
	// and the probes'.
	var cfg struct {
		Listen string `yaml:"listen"`
		Store  struct {
			Driver string `yaml:"driver"`
		} `yaml:"store"`
	}
	if err := yaml.Unmarshal([]byte(k.config), &cfg); err != nil {
		t.Fatalf("ConfigMap config: %v", err)
	}
	_, p, err := net.SplitHostPort(cfg.Listen)
	listenPort, _ := strconv.Atoi(p)
	if err != nil || listenPort == 0 {
		t.Fatalf("ConfigMap listen %q has no port", cfg.Listen)
	}
	if host, _, _ := net.SplitHostPort(cfg.Listen); host != "0.0.0.0" && host != "" && host != "::" {
		t.Errorf("ConfigMap listen %q: the kubelet and the Service cannot reach a loopback address", cfg.Listen)
	}
	if cfg.Store.Driver != "postgres" {
		t.Errorf("ConfigMap store.driver = %q: replicas need the postgres store", cfg.Store.Driver)
	}
	httpPort := k.port(t, "http")
	if httpPort != listenPort {
		t.Errorf("containerPort http = %d, the config listens on %d", httpPort, listenPort)
	}
	for _, sp := range k.service.Spec.Ports {
		if got := k.port(t, sp.TargetPort); got != listenPort {
			t.Errorf("Service targetPort %v = %d, the config listens on %d", sp.TargetPort, got, listenPort)
		}
	}
	for key, v := range k.service.Spec.Selector {
		if k.dep.Spec.Template.Metadata.Labels[key] != v {
			t.Errorf("Service selector %s=%s does not select the pods (labels %v)", key, v, k.dep.Spec.Template.Metadata.Labels)
		}
	}
	if k.c.ReadinessProbe == nil || k.c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readinessProbe = %+v, want GET /readyz", k.c.ReadinessProbe)
	}
	if k.c.LivenessProbe == nil || k.c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("livenessProbe = %+v, want GET /healthz", k.c.LivenessProbe)
	}
	for _, pr := range []*probe{k.c.ReadinessProbe, k.c.LivenessProbe, k.c.StartupProbe} {
		if pr != nil && k.port(t, pr.HTTPGet.Port) != listenPort {
			t.Errorf("probe %s port %v is not the listen port %d", pr.HTTPGet.Path, pr.HTTPGet.Port, listenPort)
		}
	}
	if a := k.dep.Spec.Template.Metadata.Annotations["prometheus.io/port"]; a != "" && a != strconv.Itoa(listenPort) {
		t.Errorf("prometheus.io/port = %s, the config listens on %d", a, listenPort)
	}
	// The config comes from the ConfigMap as a mounted directory: a subPath
	// mount is never updated, and live mapping reload would not see changes.
	mounted := false
	for _, vm := range k.c.VolumeMounts {
		if filepath.Dir(k.configPath) != filepath.Clean(vm.MountPath) {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == vm.Name && v.ConfigMap.Name == k.configMap.Metadata.Name {
				mounted = true
			}
		}
		if vm.SubPath != "" {
			t.Errorf("volumeMount %s uses subPath: the kubelet never updates it, so the mapping would not reload", vm.Name)
		}
	}
	if !mounted {
		t.Errorf("--config %s is not inside a mount of ConfigMap %s", k.configPath, k.configMap.Metadata.Name)
	}
	// Every ${VAR} the config needs (no default) comes from the env, every
	// secret from the Secret.
	env := map[string]bool{}
	for _, e := range k.c.Env {
		env[e.Name] = true
		if ref := e.ValueFrom.SecretKeyRef; ref.Name != "" {
			if ref.Name != k.secret.Metadata.Name {
				t.Errorf("env %s: secret %q, the example Secret is %q", e.Name, ref.Name, k.secret.Metadata.Name)
			}
			if _, ok := k.secret.StringData[ref.Key]; !ok {
				t.Errorf("env %s: key %q is not in the example Secret (keys %v)", e.Name, ref.Key, keys(k.secret.StringData))
			}
		} else if strings.Contains(strings.ToUpper(e.Name), "DSN") || strings.Contains(strings.ToUpper(e.Name), "TOKEN") || strings.Contains(strings.ToUpper(e.Name), "KEY") {
			t.Errorf("env %s is a secret written in the Deployment: take it from the Secret", e.Name)
		}
	}
	for _, m := range requiredVar.FindAllStringSubmatch(k.config, -1) {
		if !env[m[1]] {
			t.Errorf("the config needs ${%s}, which the container's env does not set", m[1])
		}
	}
	if !env["STATUSBRIDGE_POSTGRES_DSN"] {
		t.Error("the DSN does not come from the env (STATUSBRIDGE_POSTGRES_DSN)")
	}
	stop := time.Duration(spec.TerminationGracePeriodSeconds) * time.Second
	if pre := time.Duration(k.c.Lifecycle.PreStop.Sleep.Seconds) * time.Second; stop <= pre+shutdownGrace {
		t.Errorf("terminationGracePeriodSeconds = %v, want more than preStop %v + shutdown %v", stop, pre, shutdownGrace)
	}
}

// requiredVar is a ${VAR} without a default.
var requiredVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// TestConfigMapConfigIsValid runs the binary's config check on the
// ConfigMap's config, with the container's env filled in.
func TestConfigMapConfigIsValid(t *testing.T) {
	k := loadK8s(t)
	bin := binary(t)
	path := filepath.Join(t.TempDir(), filepath.Base(k.configPath))
	if err := os.WriteFile(path, []byte(k.config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "config", "check", "--config", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range k.c.Env {
		v := "placeholder-" + strings.ToLower(e.Name)
		if e.Name == "STATUSBRIDGE_POSTGRES_DSN" {
			v = k.secret.StringData[e.ValueFrom.SecretKeyRef.Key]
		}
		cmd.Env = append(cmd.Env, e.Name+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "warning") {
		t.Errorf("statusbridge config check on the ConfigMap's config: %v\n%s", err, out)
	}
}

// ---- systemd -------------------------------------------------------------

func loadUnit(t *testing.T) unit {
	t.Helper()
	u, err := parseUnit(load(t).raw["systemd/statusbridge.service"])
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestSystemdUnit(t *testing.T) {
	u := loadUnit(t)
	svc := u["Service"]
	one := func(key string) string {
		if len(svc[key]) != 1 {
			t.Errorf("[Service] %s appears %d times, want once", key, len(svc[key]))
			return ""
		}
		return svc[key][0]
	}
	execStart := strings.Fields(one("ExecStart"))
	if want := []string{"/usr/local/bin/statusbridge", "serve", "--config", "/etc/statusbridge/config.yaml"}; !slices.Equal(execStart, want) {
		t.Errorf("ExecStart = %q, want %q", execStart, want)
	}
	if s := one("KillSignal"); s != "SIGTERM" {
		t.Errorf("KillSignal = %s, want SIGTERM (statusbridge shuts down gracefully on it)", s)
	}
	stop, err := time.ParseDuration(one("TimeoutStopSec"))
	if err != nil || stop <= shutdownGrace {
		t.Errorf("TimeoutStopSec = %v (%v), want more than the shutdown's %v", stop, err, shutdownGrace)
	}
	if f := one("EnvironmentFile"); !strings.HasPrefix(strings.TrimPrefix(f, "-"), "/etc/statusbridge/") {
		t.Errorf("EnvironmentFile = %q, want a file under /etc/statusbridge", f)
	}
	for _, k := range []string{"NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "CapabilityBoundingSet", "SystemCallFilter"} {
		if len(svc[k]) == 0 {
			t.Errorf("[Service] lacks the hardening option %s", k)
		}
	}
	if len(u["Install"]["WantedBy"]) == 0 {
		t.Error("[Install] WantedBy is missing: systemctl enable would do nothing")
	}
	// The example env file names every variable config.example.yaml uses.
	example, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env, _ := parseEnvFile(load(t).raw["systemd/statusbridge.env.example"])
	used := 0
	for _, line := range strings.Split(string(example), "\n") {
		line, _, _ = strings.Cut(line, " #") // comments mention ${VAR} as syntax
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range anyVar.FindAllStringSubmatch(line, -1) {
			used++
			if _, ok := env[m[1]]; !ok {
				t.Errorf("statusbridge.env.example does not list %s, which config.example.yaml uses", m[1])
			}
		}
	}
	if used == 0 {
		t.Error("found no ${VAR} in config.example.yaml: the check above checks nothing")
	}
}

var anyVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)

// TestSystemdVerify runs systemd-analyze verify on the unit when it is
// installed (it names unknown keys and bad values, which systemd ignores).
func TestSystemdVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed; the unit's keys are not verified")
	}
	unitText := strings.ReplaceAll(string(load(t).raw["systemd/statusbridge.service"]), "/usr/local/bin/statusbridge", binary(t))
	path := filepath.Join(t.TempDir(), "statusbridge.service")
	if err := os.WriteFile(path, []byte(unitText), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "statusbridge.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// ---- command lines -------------------------------------------------------

// TestCommandLinesAccepted checks every statusbridge command line in
// deploy/ against the binary: the subcommand's --help exits 0 and lists
// every flag used.
func TestCommandLinesAccepted(t *testing.T) {
	k := loadK8s(t)
	u := loadUnit(t)
	bin := binary(t)
	lines := map[string][]string{
		"systemd ExecStart":     strings.Fields(u["Service"]["ExecStart"][0]),
		"Deployment containers": append(slices.Clone(k.c.Command), k.c.Args...),
	}
	for where, argv := range lines {
		if len(argv) < 2 || filepath.Base(argv[0]) != "statusbridge" {
			t.Errorf("%s: %q does not run statusbridge", where, argv)
			continue
		}
		args := argv[1:]
		sub := args[:1]
		if args[0] == "config" && len(args) > 1 {
			sub = args[:2]
		}
		out, err := exec.Command(bin, append(slices.Clone(sub), "--help")...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: statusbridge %s --help: %v\n%s", where, strings.Join(sub, " "), err, out)
			continue
		}
		for _, a := range args[len(sub):] {
			if name, ok := strings.CutPrefix(a, "-"); ok {
				name = strings.TrimPrefix(name, "-")
				name, _, _ = strings.Cut(name, "=")
				if !regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(name) + `\b`).Match(out) {
					t.Errorf("%s: flag %s is not one statusbridge %s accepts:\n%s", where, a, strings.Join(sub, " "), out)
				}
			}
		}
	}
}

// TestBinaryServesProbePaths runs the Deployment's command line (with a
// local bbolt config in place of the ConfigMap's) and GETs every path the
// probes and the scrape annotation use.
func TestBinaryServesProbePaths(t *testing.T) {
	k := loadK8s(t)
	bin := binary(t)
	paths := map[string]bool{"/metrics": true}
	for _, pr := range []*probe{k.c.ReadinessProbe, k.c.LivenessProbe, k.c.StartupProbe} {
		if pr != nil && pr.HTTPGet.Path != "" {
			paths[pr.HTTPGet.Path] = true
		}
	}
	if p := k.dep.Spec.Template.Metadata.Annotations["prometheus.io/path"]; p != "" {
		paths[p] = true
	}

	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, "listen: %s\nstore: { path: %s }\n", addr, filepath.Join(dir, "sb.db")), 0o600); err != nil {
		t.Fatal(err)
	}
	args := slices.Clone(k.c.Args)
	args[slices.Index(args, "--config")+1] = cfgPath
	cmd := exec.Command(bin, args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	}()

	// Poll until it answers (or exits, or the deadline passes).
	client := &http.Client{Timeout: 2 * time.Second}
	get := func(path string) (int, error) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if code, err := get("/healthz"); err == nil && code == http.StatusOK {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("statusbridge %s exited before answering: %v\n%s", strings.Join(args, " "), err, logs.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("statusbridge did not answer /healthz within 30s\n%s", logs.String())
		}
	}
	for _, p := range keys(paths) {
		code, err := get(p)
		if err != nil || code != http.StatusOK {
			t.Errorf("GET %s = %d, %v; want 200", p, code, err)
		}
	}
	// And it stops cleanly on the signal Kubernetes and systemd send.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace+5*time.Second)
	defer cancel()
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-ctx.Done():
		t.Errorf("statusbridge did not exit within %v of SIGTERM", shutdownGrace+5*time.Second)
	}
}
