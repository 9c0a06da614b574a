package configs

import (
	"reflect"

	"github.com/goccy/go-yaml"
)

// MaskedYAML is the configuration as it takes effect, every key in the
// file's order, with secret keys (tagged secret:"true") shown as "***" when
// set: what `marketcast check-config` prints.
func (c *Config) MaskedYAML() ([]byte, error) {
	masked := *c
	v := reflect.ValueOf(&masked).Elem()
	for _, k := range Keys() {
		if f := v.FieldByIndex(k.index); k.Secret && !f.IsZero() {
			f.Set(reflect.ValueOf("***").Convert(f.Type()))
		}
	}
	return yaml.MarshalWithOptions(&masked, yaml.IndentSequence(true))
}

// SetBy names the environment variable that set the key at path, or "".
func (c *Config) SetBy(path string) string { return c.envSet[path] }
