package logging

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestLoggerMasks(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log := New(&buf, Options{Format: format, Level: "debug", Secrets: []string{"hunter2-secret"}})
			log.Info("webhook received",
				"order_id", "212600000999", // an id: digits kept
				"event_id", "01a20ac1-7b28-7419-a226-6032ff333a18",
				"token", "anything",
				"note", "customer ahmed.alami@example.com on +212600000123 at 2026-01-13 16:29:51",
				"err", errors.New("upstream said: key hunter2-secret invalid for 212600000456"),
			)
			out := buf.String()
			for _, leak := range []string{"ahmed.alami@", "212600000123", "212600000456", "hunter2-secret", "anything"} {
				if strings.Contains(out, leak) {
					t.Errorf("%s output leaks %q: %s", format, leak, out)
				}
			}
			for _, keep := range []string{"a***@example.com", "***123", "***456", "212600000999", "2026-01-13 16:29:51", "01a20ac1-7b28-7419-a226-6032ff333a18"} {
				if !strings.Contains(out, keep) {
					t.Errorf("%s output lost %q: %s", format, keep, out)
				}
			}
		})
	}
}

func TestLevel(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, Options{Format: "json", Level: "warn"})
	log.Info("quiet")
	log.Warn("loud")
	if strings.Contains(buf.String(), "quiet") || !strings.Contains(buf.String(), "loud") {
		t.Errorf("level warn: %s", buf.String())
	}
}
