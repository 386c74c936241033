package store

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

func tp(t time.Time) *time.Time { return &t }

func fullCall() *Call {
	// A non-UTC zone and sub-millisecond digits: both must be normalised.
	zone := time.FixedZone("CET", 3600)
	base := time.Date(2025, 3, 14, 15, 9, 26, 535_897_932, zone)
	return &Call{
		SIPCallID:      "a84b4c76e66710@pc33.example.com",
		Direction:      DirectionIncoming,
		Source:         "sip:alice@127.0.0.1:5062",
		Destination:    "sip:echo@127.0.0.1",
		SourceAddr:     "127.0.0.1:5062",
		Status:         StatusHangup,
		HangupBy:       HangupByRemote,
		HangupReason:   ReasonCodec,
		SIPCode:        488,
		Codec:          "PCMA",
		DTMF:           "123*#0",
		RTPPacketsIn:   1<<40 + 7,
		RTPPacketsOut:  12345,
		RTPPacketsLost: 3,
		TMCreate:       base,
		TMRinging:      tp(base.Add(100 * time.Millisecond)),
		TMProgressing:  tp(base.Add(2*time.Second + 1)),
		TMHangup:       tp(base.Add(time.Minute + 999_999)),
	}
}

func TestCreateGetRoundTrip(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()

	c := fullCall()
	ringing := c.TMRinging
	if err := db.CreateCall(ctx, c); err != nil {
		t.Fatalf("CreateCall: %v", err)
	}
	if _, err := uuid.Parse(c.ID); err != nil {
		t.Errorf("ID %q is not a UUID: %v", c.ID, err)
	}
	if want := time.Date(2025, 3, 14, 14, 9, 26, 535_000_000, time.UTC); !c.TMCreate.Equal(want) || c.TMCreate.Location() != time.UTC {
		t.Errorf("TMCreate normalised to %v, want %v", c.TMCreate, want)
	}
	if c.TMRinging == ringing || ringing.Nanosecond() != 635_897_932 {
		t.Error("CreateCall wrote through the caller's time pointer")
	}
	if got := c.TMHangup.Nanosecond(); got != 536_000_000 {
		t.Errorf("TMHangup ns = %d, want truncation to ms", got)
	}

	got, err := db.GetCall(ctx, c.ID)
	if err != nil {
		t.Fatalf("GetCall: %v", err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
	}
	for name, tm := range map[string]*time.Time{"create": &got.TMCreate, "ringing": got.TMRinging, "progressing": got.TMProgressing, "hangup": got.TMHangup} {
		if tm.Location() != time.UTC {
			t.Errorf("tm_%s location %v, want UTC", name, tm.Location())
		}
	}
}

func TestCreateMinimalCall(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	before := time.Now().Add(-time.Millisecond)

	c := &Call{Direction: DirectionOutgoing, Status: StatusDialing}
	if err := db.CreateCall(ctx, c); err != nil {
		t.Fatalf("CreateCall: %v", err)
	}
	if c.ID == "" || c.TMCreate.Before(before) || c.TMCreate.After(time.Now()) {
		t.Errorf("defaults not set: id %q tm_create %v", c.ID, c.TMCreate)
	}
	got, err := db.GetCall(ctx, c.ID)
	if err != nil {
		t.Fatalf("GetCall: %v", err)
	}
	if got.TMRinging != nil || got.TMProgressing != nil || got.TMHangup != nil {
		t.Errorf("unset times came back set: %+v", got)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
	}

	// A caller-chosen ID is kept; reusing it is an error.
	d := &Call{ID: "my-id", Direction: DirectionIncoming, Status: StatusRinging}
	if err := db.CreateCall(ctx, d); err != nil || d.ID != "my-id" {
		t.Fatalf("CreateCall with ID: %v, id %q", err, d.ID)
	}
	if err := db.CreateCall(ctx, d); err == nil {
		t.Error("duplicate ID accepted")
	}
}

func TestCallJSON(t *testing.T) {
	c := fullCall()
	c.ID = "x"
	c.TMRinging, c.TMProgressing = nil, nil
	c.SIPCode = 0
	normalizeTimes(c)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`"tm_create":"2025-03-14T14:09:26.535Z"`,
		`"tm_ringing":null`,
		`"tm_progressing":null`,
		`"tm_hangup":"2025-03-14T14:10:26.536Z"`,
		`"hangup_reason":"codec"`,
		`"rtp_packets_in":1099511627783`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON lacks %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, "sip_code") {
		t.Errorf("zero sip_code not omitted: %s", s)
	}
}

func TestCreateUpdateRejectInvalid(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	ok := Call{Direction: DirectionIncoming, Status: StatusRinging}
	for name, mut := range map[string]func(*Call){
		"direction": func(c *Call) { c.Direction = "sideways" },
		"no status": func(c *Call) { c.Status = "" },
		"status":    func(c *Call) { c.Status = "HANGUP" },
		"by":        func(c *Call) { c.HangupBy = "me" },
		"reason":    func(c *Call) { c.HangupReason = "boredom" },
		"counter":   func(c *Call) { c.RTPPacketsLost = 1 << 63 },
	} {
		c := ok
		mut(&c)
		if err := db.CreateCall(ctx, &c); !errors.Is(err, ErrInvalid) {
			t.Errorf("create %s: err = %v, want ErrInvalid", name, err)
		}
		good := ok
		if err := db.CreateCall(ctx, &good); err != nil {
			t.Fatal(err)
		}
		bad := good
		mut(&bad)
		if err := db.UpdateCall(ctx, &bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("update %s: err = %v, want ErrInvalid", name, err)
		}
	}
	if err := db.UpdateCall(ctx, &Call{Direction: DirectionIncoming, Status: StatusRinging}); !errors.Is(err, ErrInvalid) {
		t.Errorf("update without id: %v", err)
	}
}

func TestValid(t *testing.T) {
	if !DirectionIncoming.Valid() || !DirectionOutgoing.Valid() || Direction("").Valid() {
		t.Error("Direction.Valid")
	}
	for _, s := range []CallStatus{StatusDialing, StatusRinging, StatusProgressing, StatusTerminating, StatusCanceling, StatusHangup} {
		if !s.Valid() {
			t.Errorf("%q not valid", s)
		}
	}
	if CallStatus("").Valid() {
		t.Error(`CallStatus("") valid`)
	}
	if !HangupBy("").Valid() || !HangupByLocal.Valid() || !HangupByRemote.Valid() || HangupBy("x").Valid() {
		t.Error("HangupBy.Valid")
	}
	for _, r := range []HangupReason{"", ReasonNormal, ReasonFailed, ReasonBusy, ReasonCancel, ReasonTimeout, ReasonNoAnswer,
		ReasonDialout, ReasonAMD, ReasonServerShutdown, ReasonServerRestart, ReasonCodec, ReasonError} {
		if !r.Valid() {
			t.Errorf("%q not valid", r)
		}
	}
	if HangupReason("Normal").Valid() {
		t.Error("reasons are case-sensitive")
	}
}

func TestUpdateCall(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()

	c := &Call{Direction: DirectionIncoming, Status: StatusRinging, Source: "sip:a@x", TMRinging: tp(time.Now())}
	if err := db.CreateCall(ctx, c); err != nil {
		t.Fatal(err)
	}
	created := c.TMCreate

	u := fullCall()
	u.ID = c.ID
	u.TMCreate = created.Add(time.Hour) // ignored: creation time never changes
	if err := db.UpdateCall(ctx, u); err != nil {
		t.Fatalf("UpdateCall: %v", err)
	}
	got, err := db.GetCall(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *u
	want.TMCreate = created
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("after update:\n got %+v\nwant %+v", *got, want)
	}

	// Times can be cleared again.
	u.TMRinging, u.TMProgressing, u.TMHangup = nil, nil, nil
	if err := db.UpdateCall(ctx, u); err != nil {
		t.Fatal(err)
	}
	if got, _ = db.GetCall(ctx, c.ID); got.TMRinging != nil || got.TMHangup != nil {
		t.Errorf("times not cleared: %+v", got)
	}

	missing := fullCall()
	missing.ID = uuid.NewString()
	if err := db.UpdateCall(ctx, missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("update missing: err = %v, want ErrNotFound", err)
	}
}

func TestGetMissing(t *testing.T) {
	db, _ := openTestDB(t)
	id := uuid.NewString()
	_, err := db.GetCall(context.Background(), id)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), id) {
		t.Errorf("error %q does not name the id", err)
	}
}

// createCalls inserts n calls, the i-th at tm(i), and returns their IDs.
func createCalls(t *testing.T, db *DB, n int, tm func(i int) time.Time) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		c := &Call{Direction: DirectionIncoming, Status: StatusHangup, TMCreate: tm(i), DTMF: fmt.Sprint(i)}
		if err := db.CreateCall(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		ids[i] = c.ID
	}
	return ids
}

// listAll pages through every call and returns them with the page sizes seen.
func listAll(t *testing.T, db *DB, size int) ([]Call, []int) {
	t.Helper()
	var all []Call
	var sizes []int
	tok := ""
	for {
		page, next, err := db.ListCalls(context.Background(), ListOptions{PageSize: size, PageToken: tok})
		if err != nil {
			t.Fatalf("ListCalls(token %q): %v", tok, err)
		}
		all = append(all, page...)
		sizes = append(sizes, len(page))
		if next == "" {
			return all, sizes
		}
		if len(sizes) > 1000 {
			t.Fatal("paging does not end")
		}
		tok = next
	}
}

func TestListPaging(t *testing.T) {
	db, _ := openTestDB(t)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	// Inserted in shuffled time order so that insertion order cannot pass
	// for time order.
	ids := createCalls(t, db, 45, func(i int) time.Time { return t0.Add(time.Duration((i*17)%45) * time.Second) })

	all, sizes := listAll(t, db, 20)
	if !reflect.DeepEqual(sizes, []int{20, 20, 5}) {
		t.Errorf("page sizes %v, want [20 20 5]", sizes)
	}
	if len(all) != len(ids) {
		t.Fatalf("listed %d calls, want %d", len(all), len(ids))
	}
	seen := map[string]bool{}
	for i, c := range all {
		if seen[c.ID] {
			t.Errorf("duplicate %s", c.ID)
		}
		seen[c.ID] = true
		if want := t0.Add(time.Duration(44-i) * time.Second); !c.TMCreate.Equal(want) {
			t.Errorf("row %d tm_create %v, want %v (newest first)", i, c.TMCreate, want)
		}
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("missing %s", id)
		}
	}
}

func TestListTiesPageByID(t *testing.T) {
	db, _ := openTestDB(t)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	// 25 calls in the same millisecond between older and newer ones, paged
	// with a size that splits the tie group several times.
	createCalls(t, db, 5, func(i int) time.Time { return t0.Add(-time.Duration(i+1) * time.Second) })
	createCalls(t, db, 25, func(int) time.Time { return t0 })
	createCalls(t, db, 5, func(i int) time.Time { return t0.Add(time.Duration(i+1) * time.Second) })

	all, _ := listAll(t, db, 7)
	if len(all) != 35 {
		t.Fatalf("listed %d, want 35", len(all))
	}
	seen := map[string]bool{}
	for i, c := range all {
		if seen[c.ID] {
			t.Errorf("duplicate %s", c.ID)
		}
		seen[c.ID] = true
		if i == 0 {
			continue
		}
		p := all[i-1]
		if c.TMCreate.After(p.TMCreate) || c.TMCreate.Equal(p.TMCreate) && c.ID >= p.ID {
			t.Errorf("row %d (%v %s) not after row %d (%v %s)", i, c.TMCreate, c.ID, i-1, p.TMCreate, p.ID)
		}
	}
}

func TestListNewCallsDoNotShiftPages(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	createCalls(t, db, 10, func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) })
	first, tok, err := db.ListCalls(ctx, ListOptions{PageSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	// Calls arriving between pages land before page one, not in page two.
	createCalls(t, db, 3, func(i int) time.Time { return t0.Add(time.Hour) })
	second, next, err := db.ListCalls(ctx, ListOptions{PageSize: 5, PageToken: tok})
	if err != nil {
		t.Fatal(err)
	}
	if next != "" || len(second) != 5 || !second[0].TMCreate.Before(first[4].TMCreate) {
		t.Errorf("second page shifted: %d rows, next %q", len(second), next)
	}
}

func TestListEmptyAndExact(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	calls, tok, err := db.ListCalls(ctx, ListOptions{})
	if err != nil || calls == nil || len(calls) != 0 || tok != "" {
		t.Fatalf("empty list = %#v, %q, %v; want [], \"\", nil", calls, tok, err)
	}
	if b, _ := json.Marshal(calls); string(b) != "[]" {
		t.Errorf("empty list encodes as %s", b)
	}
	// Exactly one full page: no token leading to an empty page.
	createCalls(t, db, 20, func(i int) time.Time { return time.Now().Add(time.Duration(i) * time.Millisecond) })
	calls, tok, err = db.ListCalls(ctx, ListOptions{})
	if err != nil || len(calls) != 20 || tok != "" {
		t.Errorf("full page: %d calls, token %q, %v", len(calls), tok, err)
	}
}

func TestListPageSize(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	t0 := time.Now()
	createCalls(t, db, 130, func(i int) time.Time { return t0.Add(time.Duration(i) * time.Millisecond) })
	for _, tc := range []struct{ in, want int }{{0, 20}, {1, 1}, {100, 100}, {101, 100}, {1 << 30, 100}} {
		calls, tok, err := db.ListCalls(ctx, ListOptions{PageSize: tc.in})
		if err != nil || len(calls) != tc.want || tok == "" {
			t.Errorf("PageSize %d: %d calls, token %q, %v; want %d", tc.in, len(calls), tok, err, tc.want)
		}
	}
	if _, _, err := db.ListCalls(ctx, ListOptions{PageSize: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("PageSize -1: err = %v, want ErrInvalid", err)
	}
}

func TestListBadTokens(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	t0 := time.Now()
	createCalls(t, db, 5, func(i int) time.Time { return t0.Add(time.Duration(i) * time.Millisecond) })
	_, good, err := db.ListCalls(ctx, ListOptions{PageSize: 2})
	if err != nil || good == "" {
		t.Fatalf("first page: %q, %v", good, err)
	}

	raw, _ := base64.RawURLEncoding.DecodeString(good)
	flipped := []byte(good)
	flipped[len(flipped)/2] ^= 1 // still base64url, different bytes
	wrongVersion := func() string {
		b := append([]byte{2}, raw[1:len(raw)-4]...)
		b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
		return base64.RawURLEncoding.EncodeToString(b)
	}()

	bad := map[string]string{
		"garbage":        "this is not a token!",
		"short":          "abc",
		"random base64":  base64.RawURLEncoding.EncodeToString([]byte("1700000000000|some-id-here")),
		"std padded":     base64.URLEncoding.EncodeToString(raw),
		"std alphabet":   strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/",
		"flipped":        string(flipped),
		"wrong version":  wrongVersion,
		"trailing space": good + " ",
	}
	for cut := 1; cut < len(good); cut += 3 {
		bad[fmt.Sprintf("truncated by %d", cut)] = good[:len(good)-cut]
	}
	for name, tok := range bad {
		_, _, err := db.ListCalls(ctx, ListOptions{PageToken: tok})
		if !errors.Is(err, ErrBadPageToken) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s (%q): err = %v, want ErrBadPageToken", name, tok, err)
		}
	}
}

func TestPageTokenRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		tm int64
		id string
	}{{0, "a"}, {1735689600123, uuid.NewString()}, {-1, "x"}, {1<<62 + 5, strings.Repeat("é", 40)}} {
		tm, id, err := decodePageToken(encodePageToken(tc.tm, tc.id))
		if err != nil || tm != tc.tm || id != tc.id {
			t.Errorf("round trip (%d, %q) = (%d, %q), %v", tc.tm, tc.id, tm, id, err)
		}
	}
}

func FuzzDecodePageToken(f *testing.F) {
	f.Add(encodePageToken(1735689600123, uuid.NewString()))
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		tm, id, err := decodePageToken(tok)
		if err != nil {
			if !errors.Is(err, ErrBadPageToken) {
				t.Fatalf("error %v does not wrap ErrBadPageToken", err)
			}
			return
		}
		if encodePageToken(tm, id) != tok {
			t.Fatalf("accepted a token it would not issue: %q", tok)
		}
	})
}

func TestCloseUnfinishedCalls(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	now := time.Date(2025, 6, 1, 12, 0, 0, 123_456_789, time.UTC)
	db.now = func() time.Time { return now }

	ended := &Call{Direction: DirectionIncoming, Status: StatusHangup, HangupBy: HangupByRemote,
		HangupReason: ReasonNormal, TMHangup: tp(now.Add(-time.Hour))}
	if err := db.CreateCall(ctx, ended); err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, s := range []CallStatus{StatusDialing, StatusRinging, StatusProgressing, StatusTerminating, StatusCanceling} {
		c := &Call{Direction: DirectionOutgoing, Status: s}
		if err := db.CreateCall(ctx, c); err != nil {
			t.Fatal(err)
		}
		open = append(open, c.ID)
	}

	if _, err := db.CloseUnfinishedCalls(ctx, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty reason: %v", err)
	}
	if _, err := db.CloseUnfinishedCalls(ctx, "crash"); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown reason: %v", err)
	}

	n, err := db.CloseUnfinishedCalls(ctx, ReasonServerRestart)
	if err != nil || n != len(open) {
		t.Fatalf("CloseUnfinishedCalls = %d, %v; want %d", n, err, len(open))
	}
	for _, id := range open {
		c, err := db.GetCall(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if c.Status != StatusHangup || c.HangupReason != ReasonServerRestart || c.HangupBy != HangupByLocal ||
			c.TMHangup == nil || !c.TMHangup.Equal(now.Truncate(time.Millisecond)) {
			t.Errorf("call %s after close: %+v", id, c)
		}
	}
	got, err := db.GetCall(ctx, ended.ID)
	if err != nil || !reflect.DeepEqual(got, ended) {
		t.Errorf("already ended call changed:\n got %+v\nwant %+v", got, ended)
	}
	if n, err := db.CloseUnfinishedCalls(ctx, ReasonServerRestart); err != nil || n != 0 {
		t.Errorf("second CloseUnfinishedCalls = %d, %v; want 0", n, err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	db, path := openTestDB(t)
	ctx := context.Background()

	// A second handle on the same file stands in for another process (say a
	// CLI command) writing at the same time: that contention is resolved by
	// busy_timeout, not by our single-writer pool.
	other, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	const writers, updates = 8, 50
	calls := make([]*Call, writers)
	for i := range calls {
		calls[i] = &Call{Direction: DirectionIncoming, Status: StatusProgressing}
		if err := db.CreateCall(ctx, calls[i]); err != nil {
			t.Fatal(err)
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, 4*writers)
	for i, c := range calls {
		h := db
		if i%2 == 1 {
			h = other
		}
		wg.Go(func() {
			for j := range updates {
				c.RTPPacketsIn = uint64(j + 1)
				c.DTMF += "1"
				if err := h.UpdateCall(ctx, c); err != nil {
					errs <- fmt.Errorf("writer %d update %d: %w", i, j, err)
					return
				}
				if j%10 == 0 {
					if err := h.CreateCall(ctx, &Call{Direction: DirectionOutgoing, Status: StatusDialing}); err != nil {
						errs <- fmt.Errorf("writer %d create: %w", i, err)
						return
					}
				}
			}
		})
		// Readers run alongside: under WAL they neither wait nor block.
		wg.Go(func() {
			for range updates {
				if _, err := h.GetCall(ctx, c.ID); err != nil {
					errs <- fmt.Errorf("reader %d: %w", i, err)
					return
				}
				if _, _, err := h.ListCalls(ctx, ListOptions{PageSize: 10}); err != nil {
					errs <- fmt.Errorf("reader %d list: %w", i, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		if _, err := other.CloseUnfinishedCalls(ctx, ReasonServerShutdown); err != nil {
			errs <- fmt.Errorf("close unfinished: %w", err)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err) // SQLITE_BUSY would show up here
	}

	for i, c := range calls {
		got, err := db.GetCall(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.RTPPacketsIn != updates || len(got.DTMF) != updates {
			t.Errorf("call %d: rtp_packets_in %d dtmf %d, want %d", i, got.RTPPacketsIn, len(got.DTMF), updates)
		}
	}
	all, _ := listAll(t, db, 100)
	if want := writers + writers*updates/10; len(all) != want {
		t.Errorf("%d calls, want %d", len(all), want)
	}
	checkIntegrity(t, other)
}

// TestQueryPlans guards the indexes: a change that turns a list into a full
// scan plus sort passes every other test and fails only in production.
func TestQueryPlans(t *testing.T) {
	db, _ := openTestDB(t)
	for _, tc := range []struct {
		name, query, wantIndex string
		args                   []any
	}{
		{"first page", `SELECT ` + callColumns + ` FROM calls ORDER BY tm_create DESC, id DESC LIMIT ?`, "calls_tm_create_id", []any{21}},
		{"next page", `SELECT ` + callColumns + ` FROM calls WHERE (tm_create, id) < (?, ?) ORDER BY tm_create DESC, id DESC LIMIT ?`, "calls_tm_create_id", []any{1, "x", 21}},
		{"sip call id", `SELECT id FROM calls WHERE sip_call_id = ?`, "calls_sip_call_id", []any{"abc"}},
		{"unfinished", `UPDATE calls SET status = ? WHERE status <> 'hangup'`, "calls_unfinished", []any{"hangup"}},
	} {
		rows, err := db.w.Query("EXPLAIN QUERY PLAN "+tc.query, tc.args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		if !strings.Contains(p, tc.wantIndex) || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("%s: plan %q, want index %s and no sort", tc.name, p, tc.wantIndex)
		}
	}
}
