package flow

import (
	"encoding/json"
	"strings"
	"testing"
)

// The transfer action's method: bridge, refer or auto for a blind
// transfer; a warm transfer is always bridged.
func TestTransferMethodOption(t *testing.T) {
	const dst = `"destination":{"type":"number","target":"+14155550123"}`
	for _, m := range []string{"", `,"method":"bridge"`, `,"method":"refer"`, `,"method":"auto"`, `,"mode":"warm","method":"bridge"`} {
		if _, err := actionTypes["transfer"](json.RawMessage(`{` + dst + m + `}`)); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
	for name, option := range map[string]string{
		"unknown method":    `{` + dst + `,"method":"fax"}`,
		"warm by refer":     `{` + dst + `,"mode":"warm","method":"refer"}`,
		"warm by auto":      `{` + dst + `,"mode":"warm","method":"auto"}`,
		"method not string": `{` + dst + `,"method":1}`,
	} {
		f := &Flow{ID: "t", Actions: []Action{{ID: "x", Type: "transfer", Option: json.RawMessage(option)}}}
		if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "method") {
			t.Errorf("%s: error %v, want one naming the method", name, err)
		}
	}
}

// The REFER inbox only takes REFERs while a bridge runs, and a full one
// refuses rather than blocks SIP's goroutine.
func TestReferInbox(t *testing.T) {
	var x referInbox
	if x.push(referReq{}) {
		t.Fatal("took a REFER with no bridge running")
	}
	ch := x.open()
	n := 0
	for x.push(referReq{}) {
		if n++; n > 100 {
			t.Fatal("the inbox never fills")
		}
	}
	if n != cap(ch) {
		t.Fatalf("took %d REFERs, want %d", n, cap(ch))
	}
	reply := make(chan *bLeg, 1)
	<-ch
	if !x.push(referReq{handover: reply}) {
		t.Fatal("no room after one was taken")
	}
	x.mu.Lock()
	x.ch = nil // as close does, without the NOTIFYs a test REFER cannot send
	x.mu.Unlock()
	if x.push(referReq{}) {
		t.Fatal("took a REFER after close")
	}
}

// The caller's leg ends the call unless a REFER of its is held: two held,
// one failing, the caller leaving, then the other failing ends the call
// only at the last release.
func TestCallerKeep(t *testing.T) {
	var k callerKeep
	k.hold()
	k.hold()
	if k.release() {
		t.Fatal("ended with the caller still present")
	}
	if !k.left() {
		t.Fatal("the caller leaving ended the call while a REFER was held")
	}
	if !k.release() {
		t.Fatal("the last release after the caller left did not end the call")
	}
	if k.left() {
		t.Fatal("the caller leaving with nothing held kept the call")
	}
}
