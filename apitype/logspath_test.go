package apitype

import (
	"testing"
)

func TestLogsPath(t *testing.T) {
	if got := LogsPath(true, "api:prod", "a b", "", "stderr", -1); got != "/api/logs/stream?instance=api%3Aprod&level=stderr&search=a+b" {
		t.Errorf("LogsPath = %s", got)
	}
	if got := LogsPath(false, "", "", "", "", 5); got != "/api/logs?limit=5" {
		t.Errorf("LogsPath = %s", got)
	}
}
