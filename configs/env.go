package configs

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml"
)

// The environment rule, the one way every option is set from outside a
// file (docs/OPERATIONS.md states it): MARKETCAST_ followed by the key's
// path in the file, upper-cased, with "_" for "." — delivery.flush_delay is
// MARKETCAST_DELIVERY_FLUSH_DELAY, log.level is MARKETCAST_LOG_LEVEL. The
// names come from the Config struct's yaml tags, so a key added there has
// its variable without more code. Values are written as in the file:
// durations "250ms", booleans true/false (also 1/0, yes/no, on/off), lists
// comma-separated. An empty value counts as unset, so a compose file's
// ${VAR} of an unset VAR changes nothing.

// EnvPrefix starts every variable the configuration reads.
const EnvPrefix = "MARKETCAST_"

// envAliases are the short names earlier releases documented, kept working
// beside the rule's names. Setting both to different values is an error.
var envAliases = map[string]string{
	"MARKETCAST_JWT_SECRET":    "auth.jwt_secret",
	"MARKETCAST_JWKS_URL":      "auth.jwks_url",
	"MARKETCAST_TLS_CERT":      "tls.cert_file",
	"MARKETCAST_TLS_KEY":       "tls.key_file",
	"MARKETCAST_NATS_URL":      "cluster.nats_url",
	"MARKETCAST_NATS_CREDS":    "cluster.nats_creds",
	"MARKETCAST_NATS_USER":     "cluster.nats_user",
	"MARKETCAST_NATS_PASSWORD": "cluster.nats_password",
	"MARKETCAST_NATS_TOKEN":    "cluster.nats_token",
	"MARKETCAST_NODE_NAME":     "cluster.name",
	"MARKETCAST_DATA_DIR":      "cluster.embedded.data_dir",
	"MARKETCAST_FEED":          "feed.kind",
	"MARKETCAST_SESSIONS":      "feed.sessions",
	"MARKETCAST_SIM_HOURS":     "feed.sim.hours",
	"MARKETCAST_REPLAY_FILE":   "feed.replay.file",
	"MARKETCAST_DRAIN":         "shutdown.drain",
}

// Key is one option of the configuration file.
type Key struct {
	// Path is the key as written in the file, dotted: "delivery.flush_delay".
	Path string
	// Env is its environment variable by the rule.
	Env string
	// Secret keys are masked when the configuration is printed (a field
	// tagged secret:"true").
	Secret bool

	index []int
	typ   reflect.Type
}

var durationType = reflect.TypeFor[Duration]()

// Keys lists every option of Config, in the file's order.
var Keys = sync.OnceValue(func() []Key { return appendKeys(nil, reflect.TypeFor[Config](), "", nil) })

func appendKeys(keys []Key, t reflect.Type, prefix string, index []int) []Key {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			panic("configs: Config field " + f.Name + " has no yaml tag") // TestEveryKeyHasAVariable says so first
		}
		path := prefix + name
		idx := append(slices.Clone(index), i)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			keys = appendKeys(keys, f.Type, path+".", idx)
			continue
		}
		keys = append(keys, Key{Path: path, Env: EnvName(path), Secret: f.Tag.Get("secret") == "true", index: idx, typ: f.Type})
	}
	return keys
}

// EnvName is the rule: the variable that sets the key at path.
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// applyEnv sets every key whose variable (or alias) getenv reports, and
// records where each came from. environ, when not nil, lists the process's
// variables (as os.Environ does): those that start with MARKETCAST_ but are
// no key's become warnings.
func (c *Config) applyEnv(getenv func(string) string, environ []string) error {
	root := reflect.ValueOf(c).Elem()
	aliasOf := map[string]string{}
	for alias, path := range envAliases {
		aliasOf[path] = alias
	}
	for _, k := range Keys() {
		name, v := k.Env, getenv(k.Env)
		if alias := aliasOf[k.Path]; alias != "" {
			if av := getenv(alias); av != "" {
				if v != "" && v != av {
					return fmt.Errorf("config: %s and %s both set %s, to different values: keep one", alias, k.Env, k.Path)
				}
				name, v = alias, av
			}
		}
		if v == "" {
			continue
		}
		if err := setFromText(root.FieldByIndex(k.index), v); err != nil {
			return fmt.Errorf("config: %s=%q: %v (sets %s)", name, v, err, k.Path)
		}
		if c.envSet == nil {
			c.envSet = map[string]string{}
		}
		c.envSet[k.Path] = name
	}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix) && !knownEnv(name) && !serviceLink.MatchString(name) {
			c.warnings = append(c.warnings, unknownEnvWarning(name))
		}
	}
	return nil
}

// serviceLink matches the variables Kubernetes sets in every pod for each
// Service of its namespace (a Service named marketcast gives
// MARKETCAST_SERVICE_HOST, MARKETCAST_PORT_8000_TCP, ...): not a typo, so
// not worth a warning. deploy/k8s turns them off (enableServiceLinks: false).
var serviceLink = regexp.MustCompile(`^MARKETCAST(_[A-Z0-9_]+)?_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$`)

// KnownEnv reports whether name is a variable the configuration reads: a
// key's by the rule, or a kept alias. Deployment files' tests check theirs.
func KnownEnv(name string) bool { return knownEnv(name) }

func knownEnv(name string) bool {
	if _, ok := envAliases[name]; ok {
		return true
	}
	return slices.ContainsFunc(Keys(), func(k Key) bool { return k.Env == name })
}

// unknownEnvWarning names a variable no key reads, and the nearest one
// that exists when it looks like a typo of it.
func unknownEnvWarning(name string) string {
	msg := fmt.Sprintf("environment variable %s sets nothing: no configuration key is called that (the rule: MARKETCAST_ + the key's path, e.g. MARKETCAST_LOG_LEVEL)", name)
	best, bestDist := "", 3
	for _, k := range Keys() {
		if d := editDistance(name, k.Env); d < bestDist || strings.ReplaceAll(name, "_", "") == strings.ReplaceAll(k.Env, "_", "") {
			best, bestDist = k.Env, min(d, bestDist)
		}
	}
	if best != "" {
		msg += "; did you mean " + best + "?"
	}
	return msg
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// setFromText parses an environment value into a key's field, as the file
// would have it: scalars by their type, lists comma-separated, anything
// else (a mapping, a list of structures) as YAML flow text.
func setFromText(v reflect.Value, s string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("want a duration such as 5s or 250ms")
		}
		v.Set(reflect.ValueOf(Duration{Duration: d}))
		return nil
	}
	if v.Kind() == reflect.Slice && isScalar(v.Type().Elem()) {
		list := reflect.MakeSlice(v.Type(), 0, 4)
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			e := reflect.New(v.Type().Elem()).Elem()
			if err := setScalar(e, item); err != nil {
				return fmt.Errorf("list item %q: %v", item, err)
			}
			list = reflect.Append(list, e)
		}
		v.Set(list)
		return nil
	}
	if isScalar(v.Type()) {
		return setScalar(v, s)
	}
	p := reflect.New(v.Type())
	if err := yaml.UnmarshalWithOptions([]byte(s), p.Interface(), yaml.Strict()); err != nil {
		return fmt.Errorf("want YAML for %s: %v", v.Type(), err)
	}
	v.Set(p.Elem())
	return nil
}

func isScalar(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return t != durationType
	}
	return false
}

func setScalar(v reflect.Value, s string) error {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		var b bool
		if err := parseBool(strings.TrimSpace(s), &b); err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want an integer")
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want a non-negative integer")
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), v.Type().Bits())
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("want a number")
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("configs: no text form for %s", v.Type())
	}
	return nil
}

func parseBool(v string, dst *bool) error {
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		*dst = true
	case "0", "false", "no", "off":
		*dst = false
	default:
		return fmt.Errorf("want true or false")
	}
	return nil
}
