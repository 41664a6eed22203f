// Package lambdalog builds the JSON slog logger both Lambda functions use: one JSON object
// per line on stdout, at the level Lambda's advanced logging controls set
// (AWS_LAMBDA_LOG_LEVEL), with the function name on every line.
package lambdalog

import (
	"io"
	"log/slog"
	"strings"
)

// New returns the logger for a function, reading settings with getenv.
func New(w io.Writer, getenv func(string) string) *slog.Logger {
	level := slog.LevelInfo
	switch strings.ToUpper(getenv("AWS_LAMBDA_LOG_LEVEL")) {
	case "TRACE", "DEBUG":
		level = slog.LevelDebug
	case "WARN":
		level = slog.LevelWarn
	case "ERROR", "FATAL":
		level = slog.LevelError
	}
	log := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
	if fn := getenv("AWS_LAMBDA_FUNCTION_NAME"); fn != "" {
		log = log.With("function", fn)
	}
	return log
}
