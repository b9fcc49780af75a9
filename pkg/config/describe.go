package config

import (
	"log/slog"
	"net/url"
	"reflect"
	"strings"
	"time"
)

// Setting is one configurable value as the environment sees it.
type Setting struct {
	Env     string
	Flag    string
	Default string
	Secret  bool
	Value   any
}

// Settings lists the settings of a kong configuration struct (nested and
// embedded structs included) in field order, with their current values.
func Settings(cfg any) []Setting {
	var out []Setting
	walk(reflect.Indirect(reflect.ValueOf(cfg)), &out)
	return out
}

// EnvNames lists the environment variable names a configuration struct reads.
func EnvNames(cfg any) []string {
	var names []string
	for _, s := range Settings(cfg) {
		names = append(names, s.Env)
	}
	return names
}

func walk(v reflect.Value, out *[]Setting) {
	if v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		if !f.IsExported() {
			continue
		}
		env, ok := f.Tag.Lookup("env")
		if !ok {
			walk(reflect.Indirect(fv), out)
			continue
		}
		*out = append(*out, Setting{
			Env:     env,
			Flag:    f.Tag.Get("name"),
			Default: f.Tag.Get("default"),
			Secret:  f.Tag.Get("secret") == "true",
			Value:   fv.Interface(),
		})
	}
}

// LogAttrs renders a configuration for the one log line a binary writes at
// start: secrets are masked (a URL keeps everything but its password).
func LogAttrs(cfg any) []slog.Attr {
	var attrs []slog.Attr
	for _, s := range Settings(cfg) {
		v := s.Value
		if d, ok := v.(time.Duration); ok {
			v = d.String()
		}
		if s.Secret {
			v = mask(v)
		}
		attrs = append(attrs, slog.Any(s.Env, v))
	}
	return attrs
}

func mask(v any) any {
	switch x := v.(type) {
	case string:
		if x == "" {
			return ""
		}
		if u, err := url.Parse(x); err == nil && u.Scheme != "" && u.Host != "" {
			return maskURL(u)
		}
		return "***"
	case []string:
		return strings.Repeat("***,", len(x))
	default:
		return "***"
	}
}

// maskURL hides the password of the user part and every query parameter
// that names a secret (pgx also reads ?password=).
func maskURL(u *url.URL) string {
	const hidden = "xxxxx"
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), hidden)
	}
	q := u.Query()
	for k := range q {
		lk := strings.ToLower(k)
		if strings.Contains(lk, "pass") || strings.Contains(lk, "secret") || strings.Contains(lk, "token") || strings.Contains(lk, "key") {
			q.Set(k, hidden)
		}
	}
	u.RawQuery = q.Encode()
	return strings.ReplaceAll(u.String(), hidden, "***")
}
