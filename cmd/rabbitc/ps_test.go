package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPrintStates(t *testing.T) {
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	sts := []state{
		{ID: "0123456789abcdef", InitPid: 42, Args: []string{"sleep", "60"}, Rootfs: "/r", Created: now.Add(-90 * time.Second)},
		{ID: "fedcba9876543210", InitPid: 7, Args: []string{"sh", "-c", strings.Repeat("x", 80)}, Rootfs: "/s", Created: now.Add(-1 * time.Second)},
	}
	var b bytes.Buffer
	printStates(&b, sts, false, now)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "CONTAINER ID") ||
		!strings.Contains(lines[1], "0123456789ab") || !strings.Contains(lines[1], "1 minute ago") || !strings.Contains(lines[1], `"sleep 60"`) ||
		!strings.Contains(lines[2], "1 second ago") || !strings.Contains(lines[2], `..."`) {
		t.Errorf("ps output:\n%s", b.String())
	}
	b.Reset()
	printStates(&b, sts, true, now)
	if b.String() != "0123456789ab\nfedcba987654\n" {
		t.Errorf("ps -q output %q", b.String())
	}
	for d, want := range map[time.Duration]string{0: "0 seconds ago", 2 * time.Hour: "2 hours ago", 72 * time.Hour: "3 days ago", 59 * time.Minute: "59 minutes ago"} {
		if got := ago(d); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
}
