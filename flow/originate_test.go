package flow

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/store"
)

// fakeDialer answers every INVITE with a scripted outcome and records what
// was asked. It never answers 200: the answered path needs a real SIP
// dialog and is tested end to end (cmd/voxbridge/originate_e2e_test.go).
type fakeDialer struct {
	mu       sync.Mutex
	reqs     []sip.DialRequest
	contacts []store.Registration
	// outcome runs in Dial: ring with r.OnProgress, fail, or block.
	outcome func(ctx context.Context, r sip.DialRequest) error
}

func (d *fakeDialer) Dial(ctx context.Context, r sip.DialRequest) (*sip.OutLeg, error) {
	d.mu.Lock()
	d.reqs = append(d.reqs, r)
	d.mu.Unlock()
	return nil, d.outcome(ctx, r)
}

func (d *fakeDialer) Contacts(context.Context, string) ([]store.Registration, error) {
	return d.contacts, nil
}

func (d *fakeDialer) requests() []sip.DialRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]sip.DialRequest(nil), d.reqs...)
}

func originateController(t *testing.T, d Dialer) (*Controller, *store.DB, *Bus) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "flow.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	bus := NewBus()
	ct, err := NewController(Config{Store: db, MediaIP: netip.MustParseAddr("127.0.0.1"), BindIP: net.IPv4(127, 0, 0, 1),
		Ports: media.PortRange{Min: 41000, Max: 41999}, Logger: slog.New(slog.DiscardHandler), Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	if d != nil {
		ct.SetDialer(d)
	}
	return ct, db, bus
}

// finalRecord waits for the call's record to be final.
func finalRecord(t *testing.T, db *store.DB, id string) *store.Call {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := db.GetCall(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if c.Status == store.StatusHangup {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("call %s still %s", id, c.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var inline = json.RawMessage(`[{"type":"hangup"}]`)

// A callee that rings, then answers 486: the call goes dialing → ringing →
// hangup (busy, 486, the callee's doing), its events say so in order, and
// the INVITE carries what the request asked for.
func TestOriginateBusy(t *testing.T) {
	d := &fakeDialer{outcome: func(ctx context.Context, r sip.DialRequest) error {
		r.OnProgress(sip.Progress{Code: 180, Reason: "Ringing"})
		return &sip.DialError{Reason: store.ReasonBusy, Code: 486, Status: "Busy Here"}
	}}
	ct, db, bus := originateController(t, d)
	sub := bus.Subscribe(64, nil)
	defer sub.Close()
	rec, err := ct.Originate(context.Background(), OriginateRequest{
		To: "sip:bob@127.0.0.1:5090", From: "100", CallerName: "Acme", Actions: inline,
		RingTimeout: 7 * time.Second, Metadata: map[string]string{"crm_id": "42"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Direction != store.DirectionOutgoing || rec.Status != store.StatusDialing || rec.ID == "" {
		t.Fatalf("immediate record: %+v", rec)
	}
	final := finalRecord(t, db, rec.ID)
	if final.HangupReason != store.ReasonBusy || final.SIPCode != 486 || final.HangupBy != store.HangupByRemote ||
		final.TMRinging == nil || final.TMProgressing != nil || final.Variables["metadata.crm_id"] != "42" {
		t.Fatalf("final record: %+v", final)
	}
	reqs := d.requests()
	if len(reqs) != 1 || reqs[0].URI != "sip:bob@127.0.0.1:5090" || !reqs[0].System || reqs[0].From.User != "100" ||
		reqs[0].From.Name != "Acme" || reqs[0].RingTimeout != 7*time.Second || len(reqs[0].Offer) == 0 {
		t.Fatalf("dial requests: %+v", reqs)
	}
	var types []string
	for len(types) == 0 || types[len(types)-1] != EventCallHangup {
		select {
		case ev := <-sub.C:
			if ev.CallID == rec.ID {
				types = append(types, ev.Type)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("events so far: %v", types)
		}
	}
	if got := strings.Join(types, " "); got != "call.created call.ringing call.hangup" {
		t.Fatalf("events: %s", got)
	}
	// One call, one record: the INVITE has none of its own.
	calls, _, err := db.ListCalls(context.Background(), store.ListOptions{}, store.CallFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0].ID != rec.ID || ct.LiveCalls() != 0 {
		t.Fatalf("records %+v, %d live calls; want only the call's", calls, ct.LiveCalls())
	}
}

// An extension with two phones rings both: still one record (no record
// per INVITE), one ringing event however many ring, and the worst failure
// (busy) on it.
func TestOriginateRingAllOneRecord(t *testing.T) {
	d := &fakeDialer{
		contacts: []store.Registration{
			{Extension: "1001", Contact: "sip:1001@127.0.0.1:5098", SourceAddr: "127.0.0.1:5098", Transport: "udp"},
			{Extension: "1001", Contact: "sip:1001@127.0.0.1:5099", SourceAddr: "127.0.0.1:5099", Transport: "udp"},
		},
		outcome: func(ctx context.Context, r sip.DialRequest) error {
			r.OnProgress(sip.Progress{Code: 180, Reason: "Ringing"})
			if strings.HasSuffix(r.Binding.Contact, ":5098") {
				return &sip.DialError{Reason: store.ReasonBusy, Code: 486, Status: "Busy Here"}
			}
			return &sip.DialError{Reason: store.ReasonNoAnswer, Code: 480, Status: "Temporarily Unavailable"}
		},
	}
	ct, db, bus := originateController(t, d)
	sub := bus.Subscribe(64, nil)
	defer sub.Close()
	ctx := context.Background()
	ext := store.Extension{Number: "1001", Enabled: true}
	if err := ext.SetPassword("voxbridge", "secret-1001"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateExtension(ctx, &ext); err != nil {
		t.Fatal(err)
	}
	rec, err := ct.Originate(ctx, OriginateRequest{To: "1001", Actions: inline})
	if err != nil {
		t.Fatal(err)
	}
	if f := finalRecord(t, db, rec.ID); f.HangupReason != store.ReasonBusy || f.SIPCode != 486 || f.TMRinging == nil {
		t.Fatalf("final record: %+v", f)
	}
	if n := len(d.requests()); n != 2 {
		t.Fatalf("%d INVITEs, want one per phone", n)
	}
	calls, _, err := db.ListCalls(ctx, store.ListOptions{}, store.CallFilter{})
	if err != nil || len(calls) != 1 {
		t.Fatalf("records %+v (%v), want the call's only", calls, err)
	}
	var types []string
	for len(types) == 0 || types[len(types)-1] != EventCallHangup {
		select {
		case ev := <-sub.C:
			types = append(types, ev.Type)
		case <-time.After(10 * time.Second):
			t.Fatalf("events so far: %v", types)
		}
	}
	if got := strings.Join(types, " "); got != "call.created call.ringing call.hangup" {
		t.Fatalf("events: %s", got)
	}
}

// To picks the destination: digits naming an extension ring its phones,
// other numbers go out through the named trunk only.
func TestOriginateDestinations(t *testing.T) {
	d := &fakeDialer{
		contacts: []store.Registration{{Extension: "1001", Contact: "sip:1001@127.0.0.1:5099", SourceAddr: "127.0.0.1:5099", Transport: "udp"}},
		outcome: func(context.Context, sip.DialRequest) error {
			return &sip.DialError{Reason: store.ReasonNoAnswer, Code: 480, Status: "Temporarily Unavailable"}
		},
	}
	ct, db, _ := originateController(t, d)
	ctx := context.Background()
	ext := store.Extension{Number: "1001", Enabled: true}
	if err := ext.SetPassword("voxbridge", "secret-1001"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateExtension(ctx, &ext); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if err := db.CreateTrunk(ctx, &store.Trunk{Name: name, Enabled: true, Host: "192.0.2.1"}); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := ct.Originate(ctx, OriginateRequest{To: "1001", Actions: inline})
	if err != nil {
		t.Fatal(err)
	}
	if f := finalRecord(t, db, rec.ID); f.HangupReason != store.ReasonNoAnswer || f.SIPCode != 480 {
		t.Fatalf("extension call: %+v", f)
	}
	rec, err = ct.Originate(ctx, OriginateRequest{To: "+34 910 000 001", Trunk: "b", Actions: inline})
	if err != nil {
		t.Fatal(err)
	}
	finalRecord(t, db, rec.ID)
	reqs := d.requests()
	if len(reqs) != 2 || reqs[0].Binding == nil || reqs[0].Binding.Contact != "sip:1001@127.0.0.1:5099" {
		t.Fatalf("extension dial: %+v", reqs)
	}
	if reqs[1].Number != "+34910000001" || len(reqs[1].Trunks) != 1 || reqs[1].Trunks[0].Name != "b" {
		t.Fatalf("number dial: %+v", reqs[1])
	}
}

// Shutdown while a call is still ringing cancels the dialing and leaves
// the record ended by us, for the shutdown; then no call is accepted.
func TestOriginateShutdownWhileDialing(t *testing.T) {
	dialing := make(chan struct{})
	d := &fakeDialer{outcome: func(ctx context.Context, r sip.DialRequest) error {
		close(dialing)
		<-ctx.Done()
		return &sip.DialError{Reason: store.ReasonCancel, Code: 487, Status: "Request Terminated"}
	}}
	ct, db, _ := originateController(t, d)
	rec, err := ct.Originate(context.Background(), OriginateRequest{To: "sip:bob@127.0.0.1:5090", Actions: inline})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-dialing:
	case <-time.After(10 * time.Second):
		t.Fatalf("never dialed: %+v", finalRecord(t, db, rec.ID))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ct.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	f := finalRecord(t, db, rec.ID)
	if f.HangupBy != store.HangupByLocal || f.HangupReason != store.ReasonServerShutdown {
		t.Fatalf("record: %+v", f)
	}
	if _, err := ct.Originate(context.Background(), OriginateRequest{To: "sip:bob@127.0.0.1:5090", Actions: inline}); !errors.Is(err, ErrOutboundUnavailable) {
		t.Fatalf("after shutdown: %v", err)
	}
}

// A call stuck past the shutdown's grace (its dialing ignores the
// cancel, like a peer that never answers our BYE) still gets a final
// record before the store closes: hung up by us, for the shutdown.
func TestShutdownClosesTheRecordsOfStuckCalls(t *testing.T) {
	dialing, release := make(chan struct{}), make(chan struct{})
	d := &fakeDialer{outcome: func(ctx context.Context, r sip.DialRequest) error {
		close(dialing)
		<-release
		return &sip.DialError{Reason: store.ReasonCancel, Code: 487, Status: "Request Terminated"}
	}}
	ct, db, _ := originateController(t, d)
	defer close(release)
	rec, err := ct.Originate(context.Background(), OriginateRequest{To: "sip:bob@127.0.0.1:5090", Actions: inline})
	if err != nil {
		t.Fatal(err)
	}
	<-dialing
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no grace at all
	if err := ct.Shutdown(ctx); err == nil || !strings.Contains(err.Error(), "1 calls still live") {
		t.Fatalf("Shutdown = %v, want the stuck call reported", err)
	}
	if err := db.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	f, err := db.GetCall(context.Background(), rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if f.Status != store.StatusHangup || f.HangupBy != store.HangupByLocal || f.HangupReason != store.ReasonServerShutdown || f.TMHangup == nil {
		t.Fatalf("record of the stuck call: %+v", f)
	}
}

// Without a dialer nothing is placed, and the request is still checked
// first; inline actions are refused with their index and field.
func TestOriginateRefusals(t *testing.T) {
	ct, db, _ := originateController(t, nil)
	ctx := context.Background()
	if _, err := ct.Originate(ctx, OriginateRequest{To: "sip:bob@127.0.0.1", Actions: inline}); !errors.Is(err, ErrOutboundUnavailable) {
		t.Fatalf("no dialer: %v", err)
	}
	_, err := ct.Originate(ctx, OriginateRequest{To: "sip:bob@127.0.0.1", Actions: json.RawMessage(`[{"type":"answer"},{"type":"beep","option":{"frequency_hz":5}}]`)})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Index != 1 || ve.Field != "option.frequency_hz" {
		t.Fatalf("bad inline action: %v", err)
	}
	_, err = ct.Originate(ctx, OriginateRequest{To: "sip:bob@127.0.0.1", FlowID: "nope"})
	var re *RequestError
	if !errors.As(err, &re) || re.Field != "flow_id" || !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown flow: %v", err)
	}
	calls, _, err := db.ListCalls(ctx, store.ListOptions{}, store.CallFilter{})
	if err != nil || len(calls) != 0 {
		t.Fatalf("records of refused calls: %v %v", calls, err)
	}
}
