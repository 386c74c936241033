package flow

import (
	"encoding/json"
	"strings"
	"testing"
)

// ai_talk's fallback_target_id is a jump: it must name an action, and the
// action it names is reachable through it.
func TestAITalkFallbackTarget(t *testing.T) {
	check := func(actions string) error {
		var a []Action
		if err := json.Unmarshal([]byte(actions), &a); err != nil {
			t.Fatal(err)
		}
		return (&Flow{ID: "g", Actions: a}).Validate()
	}
	err := check(`[{"type":"answer"},{"type":"ai_talk","option":{"agent_id":"a","fallback_target_id":"nope"}}]`)
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown fallback accepted: %v", err)
	}
	err = check(`[{"type":"answer"},{"type":"ai_talk","option":{"agent_id":"a","fallback_target_id":"human"}},{"type":"hangup"},
		{"id":"human","type":"connect","option":{"destinations":[{"type":"extension","target":"1002"}]}}]`)
	if err != nil {
		t.Errorf("fallback to a later action refused: %v", err)
	}
}
