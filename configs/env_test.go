package configs

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// TestEveryKeyHasAVariable sets every key of the file through its variable
// and reads it back: a key added to Config is covered here with no change to
// this test, and one of a type the rule cannot parse fails it.
func TestEveryKeyHasAVariable(t *testing.T) {
	keys := Keys()
	// The walk over Config finds exactly the keys of the default file.
	var inFile map[string]any
	if err := yaml.Unmarshal(DefaultFile, &inFile); err != nil {
		t.Fatal(err)
	}
	var fileKeys, structKeys []string
	var flatten func(prefix string, m map[string]any)
	flatten = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				flatten(prefix+k+".", sub)
				continue
			}
			fileKeys = append(fileKeys, prefix+k)
		}
	}
	flatten("", inFile)
	for _, k := range keys {
		structKeys = append(structKeys, k.Path)
	}
	slices.Sort(fileKeys)
	slices.Sort(structKeys)
	if !slices.Equal(fileKeys, structKeys) {
		t.Fatalf("keys of marketcast.yaml and of Config differ:\nfile:   %v\nConfig: %v", fileKeys, structKeys)
	}
	seen := map[string]string{}
	for _, k := range keys {
		if other, dup := seen[k.Env]; dup {
			t.Fatalf("%s and %s share the variable %s", k.Path, other, k.Env)
		}
		seen[k.Env] = k.Path
		if !strings.HasPrefix(k.Env, "MARKETCAST_") || k.Env != strings.ToUpper(k.Env) || strings.Contains(k.Env, ".") {
			t.Fatalf("%s: variable %q breaks the rule", k.Path, k.Env)
		}
		if serviceLink.MatchString(k.Env) {
			t.Fatalf("%s: %s looks like a Kubernetes service link and would be taken for one", k.Path, k.Env)
		}
	}
	for alias, path := range envAliases {
		if p, ok := seen[alias]; ok {
			t.Fatalf("alias %s is also the rule's name for %s", alias, p)
		}
		if !slices.Contains(structKeys, path) {
			t.Fatalf("alias %s names %s, which is no key", alias, path)
		}
	}

	for _, k := range keys {
		t.Run(k.Path, func(t *testing.T) {
			c := Default()
			field := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
			text, want := sampleFor(t, k, field)
			env := map[string]string{k.Env: text}
			if err := c.applyEnv(func(n string) string { return env[n] }, nil); err != nil {
				t.Fatalf("%s=%q: %v", k.Env, text, err)
			}
			if got := field.Interface(); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s=%q set %s to %#v; want %#v", k.Env, text, k.Path, got, want)
			}
			if c.envSet[k.Path] != k.Env {
				t.Fatalf("%s not recorded as set by %s", k.Path, k.Env)
			}
			if field.Kind() == reflect.String || field.Kind() == reflect.Slice && k.typ.Elem().Kind() == reflect.String {
				return // any text is a string, or a list of them
			}
			env[k.Env] = "not-a-" + k.typ.Kind().String()
			err := Default().applyEnv(func(n string) string { return env[n] }, nil)
			if err == nil || !strings.Contains(err.Error(), k.Env+`="not-a-`) || !strings.Contains(err.Error(), "(sets "+k.Path+")") {
				t.Fatalf("a bad %s: got %v; want an error naming the variable and the key", k.Env, err)
			}
		})
	}
}

// sampleFor returns a value for k differing from its default, as text and
// as the field will hold it.
func sampleFor(t *testing.T, k Key, field reflect.Value) (string, any) {
	t.Helper()
	if k.typ == durationType {
		return "1234ms", Duration{Duration: 1234 * time.Millisecond}
	}
	switch field.Kind() {
	case reflect.String:
		return "value-of-" + k.Path, "value-of-" + k.Path
	case reflect.Bool:
		if field.Bool() {
			return "false", false
		}
		return "true", true
	case reflect.Int, reflect.Int64, reflect.Int32:
		v := reflect.New(k.typ).Elem()
		v.SetInt(12345)
		return "12345", v.Interface()
	case reflect.Float64:
		return "2.5", 2.5
	case reflect.Slice:
		if k.typ.Elem().Kind() == reflect.String {
			return "a, b,c", []string{"a", "b", "c"}
		}
	}
	t.Fatalf("%s: no sample for a %s; extend sampleFor (and check setFromText parses it)", k.Path, k.typ)
	return "", nil
}

// TestEnvLoad runs the rule through Load, validation included: the
// issue's examples, a list, an alias, and errors that name the variable.
func TestEnvLoad(t *testing.T) {
	load := func(env map[string]string) (*Config, error) {
		return Load("", func(k string) string { return env[k] })
	}
	c, err := load(map[string]string{
		"MARKETCAST_DELIVERY_FLUSH_DELAY":   "5ms",
		"MARKETCAST_LOG_LEVEL":              "debug",
		"MARKETCAST_LOG_FORMAT":             "json",
		"MARKETCAST_HTTP_ALLOWED_ORIGINS":   "https://a.example.com, https://*.b.example.com",
		"MARKETCAST_LIMITS_RATE_PER_MINUTE": "600",
		"MARKETCAST_NATS_URL":               "nats://127.0.0.1:4222",
		"MARKETCAST_WEB":                    "off",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Delivery.FlushDelay.Duration != 5*time.Millisecond || c.Log.Level != "debug" || c.Log.Format != "json" ||
		!reflect.DeepEqual(c.HTTP.AllowedOrigins, []string{"https://a.example.com", "https://*.b.example.com"}) ||
		c.Limits.RatePerMinute != 600 || c.Cluster.NATSURL != "nats://127.0.0.1:4222" || c.Web {
		t.Fatalf("environment not applied: %+v", c)
	}

	// The alias and the rule's name agree, or it is an error.
	if _, err := load(map[string]string{"MARKETCAST_JWT_SECRET": "0123456789abcdef-one", "MARKETCAST_AUTH_JWT_SECRET": "0123456789abcdef-two"}); err == nil ||
		!strings.Contains(err.Error(), "MARKETCAST_JWT_SECRET and MARKETCAST_AUTH_JWT_SECRET") {
		t.Fatalf("alias and name disagreeing: got %v", err)
	}
	if c, err := load(map[string]string{"MARKETCAST_JWT_SECRET": "0123456789abcdef-one", "MARKETCAST_AUTH_JWT_SECRET": "0123456789abcdef-one"}); err != nil ||
		c.Auth.JWTSecret != "0123456789abcdef-one" {
		t.Fatalf("alias and name agreeing: %v", err)
	}

	for env, want := range map[string]string{
		"MARKETCAST_LIMITS_RATE_PER_MINUTE=abc":   `MARKETCAST_LIMITS_RATE_PER_MINUTE="abc": want an integer (sets limits.rate_per_minute)`,
		"MARKETCAST_DELIVERY_FLUSH_DELAY=2 ms":    `MARKETCAST_DELIVERY_FLUSH_DELAY="2 ms": want a duration such as 5s or 250ms`,
		"MARKETCAST_FEED_SIM_RATE=fast":           `MARKETCAST_FEED_SIM_RATE="fast": want a number`,
		"MARKETCAST_DEV_MODE=maybe":               `MARKETCAST_DEV_MODE="maybe": want true or false`,
		"MARKETCAST_LIMITS_RATE_PER_MINUTE=-5":    `limits.rate_per_minute (set by MARKETCAST_LIMITS_RATE_PER_MINUTE): want > 0, got -5`,
		"MARKETCAST_LOG_LEVEL=loud":               `log.level (set by MARKETCAST_LOG_LEVEL): want debug, info, warn or error, got "loud"`,
		"MARKETCAST_DRAIN=sometimes":              `shutdown.drain (set by MARKETCAST_DRAIN): want "close" or "drop"`,
		"MARKETCAST_CLUSTER_STREAM_MAX_BYTES=1.5": `MARKETCAST_CLUSTER_STREAM_MAX_BYTES="1.5": want an integer`,
	} {
		name, val, _ := strings.Cut(env, "=")
		_, err := load(map[string]string{name: val})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v; want %q", env, err, want)
		}
	}
}

// TestEnvEmptyIsUnset: an empty variable changes nothing, as a compose
// file's ${VAR} of an unset VAR gives.
func TestEnvEmptyIsUnset(t *testing.T) {
	c, err := LoadEnviron("", []string{"MARKETCAST_LISTEN=", "MARKETCAST_LOG_LEVEL="})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != Default().Listen || c.Log.Level != "info" {
		t.Fatalf("empty variables changed the configuration: listen %q level %q", c.Listen, c.Log.Level)
	}
}

// TestUnknownEnvIsReported: a variable with the prefix that sets nothing is
// a warning naming it (and the key it was probably meant for), never
// silently ignored; Kubernetes' service links are not typos.
func TestUnknownEnvIsReported(t *testing.T) {
	c, err := LoadEnviron("", []string{
		"MARKETCAST_DEVMODE=false", "MARKETCAST_LOG_LEVLE=debug", "MARKETCAST_SOMETHING=1",
		"MARKETCAST_LOG_LEVEL=warn", "MARKETCAST_NATS_URL=nats://127.0.0.1:4222", "HOME=/root",
		"MARKETCAST_SERVICE_HOST=10.0.0.1", "MARKETCAST_SERVICE_PORT=8000", "MARKETCAST_SERVICE_PORT_WS=8000",
		"MARKETCAST_PORT=tcp://10.0.0.1:8000", "MARKETCAST_PORT_8000_TCP_ADDR=10.0.0.1", "MARKETCAST_OPS_PORT_9090_TCP=tcp://10.0.0.2:9090",
	})
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{
		"MARKETCAST_DEVMODE sets nothing", "did you mean MARKETCAST_DEV_MODE?",
		"MARKETCAST_LOG_LEVLE sets nothing", "did you mean MARKETCAST_LOG_LEVEL?",
		"MARKETCAST_SOMETHING sets nothing",
	} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	if n := len(c.Warnings()); n != 3 {
		t.Errorf("%d warnings; want 3 (known names, aliases and service links are not reported):\n%s", n, w)
	}
	if c.Log.Level != "warn" {
		t.Errorf("MARKETCAST_LOG_LEVEL not applied beside the unknown ones")
	}
}

// TestOperationsDocumentsTheRule: OPERATIONS.md states the rule and every
// alias it keeps.
func TestOperationsDocumentsTheRule(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, want := range []string{"MARKETCAST_DELIVERY_FLUSH_DELAY", "MARKETCAST_LOG_LEVEL", "comma-separated"} {
		if !strings.Contains(doc, want) {
			t.Errorf("OPERATIONS.md does not mention %s", want)
		}
	}
	for alias, path := range envAliases {
		if !strings.Contains(doc, "`"+alias+"`") || !strings.Contains(doc, "`"+path+"`") {
			t.Errorf("OPERATIONS.md does not list the alias %s of %s", alias, path)
		}
	}
}
