package lambdarun

import (
	"sort"
	"strconv"
	"strings"
	"time"
)

// Fake credentials, as Lambda gives every function temporary ones. Tests that need real
// behaviour point the SDK at an emulator that accepts any key.
const (
	fakeAccessKeyID     = "ASIALAMBDARUNFAKEKEY"
	fakeSecretAccessKey = "lambdarun/fake/secret/access/key/000000"
	fakeSessionToken    = "lambdarun-fake-session-token"
)

// buildEnv returns the process environment without AWS_LAMBDA_RUNTIME_API: host (only
// with InheritEnv) or PATH=/usr/bin:/bin, then Lambda's variables, then cfg.Env.
func buildEnv(cfg Config, taskRoot string, host []string) []string {
	m := map[string]string{}
	if cfg.InheritEnv {
		for _, kv := range host {
			if k, v, ok := strings.Cut(kv, "="); ok {
				m[k] = v
			}
		}
	} else {
		m["PATH"] = "/usr/bin:/bin"
	}
	for k, v := range map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME":        cfg.FunctionName,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(cfg.MemoryMB),
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"AWS_LAMBDA_LOG_FORMAT":           "JSON",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/" + cfg.FunctionName,
		"AWS_LAMBDA_LOG_STREAM_NAME":      time.Now().UTC().Format("2006/01/02") + "/[$LATEST]" + newRequestID()[:8],
		"AWS_REGION":                      cfg.Region,
		"AWS_DEFAULT_REGION":              cfg.Region,
		"AWS_ACCESS_KEY_ID":               fakeAccessKeyID,
		"AWS_SECRET_ACCESS_KEY":           fakeSecretAccessKey,
		"AWS_SESSION_TOKEN":               fakeSessionToken,
		"_HANDLER":                        handlerName(cfg),
		"LAMBDA_TASK_ROOT":                taskRoot,
		"LANG":                            "en_US.UTF-8",
		"TZ":                              ":UTC",
	} {
		m[k] = v
	}
	for k, v := range cfg.Env {
		m[k] = v
	}
	delete(m, "AWS_LAMBDA_RUNTIME_API")
	env := make([]string, 0, len(m)+1)
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// handlerName is _HANDLER: a template's Handler, "bootstrap" for Go on provided.al2023.
func handlerName(cfg Config) string {
	if h, ok := cfg.Env["_HANDLER"]; ok {
		return h
	}
	return "bootstrap"
}
