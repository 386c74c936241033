package main

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// load --auth-extensions: the extensions are created in the server's
// database while it runs, every call logs in as one of them (the server
// admits no anonymous callers here, so a call without credentials fails
// with 407), and wrong passwords fail with 403.
func TestLoadWithDigestAuth(t *testing.T) {
	echo := mustFlow(t, `{"id":"echo","actions":[{"type":"answer"},{"type":"echo","option":{"duration_ms":60000,"end_on_dtmf":false}}]}`)
	inst, cfg := testServerWith(t, instanceOptions{flow: echo}, func(c *serveConfig) { c.SIPAnonymous = "" })
	ctx := context.Background()
	accts, err := prepareLoadAccounts(ctx, cfg.DB, defaultLoadRealm, 3)
	if err != nil {
		t.Fatal(err)
	}
	// Again: existing extensions are reset, not refused.
	if accts, err = prepareLoadAccounts(ctx, cfg.DB, defaultLoadRealm, 3); err != nil {
		t.Fatal(err)
	}
	base := loadConfig{
		Target: fmt.Sprintf("sip:echo@127.0.0.1:%d", inst.SIPUDP.Port), Calls: 6, Concurrency: 3,
		Rate: 20, Hold: 1500 * time.Millisecond, ToneHz: 1000, Expect: true, LocalIP: "127.0.0.1",
	}

	run := base
	run.Accounts = accts
	rep, err := placeLoad(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Authenticated || rep.Answered != 6 || rep.Failed != 0 || rep.AudioOK != 6 {
		t.Fatalf("authenticated run: %+v", rep)
	}
	if rep.SetupMSP50 <= 0 || rep.CallsPerSec <= 0 {
		t.Fatalf("no setup figures: %+v", rep)
	}

	anon := base
	anon.Calls, anon.Expect = 2, false
	rep, err = placeLoad(ctx, anon)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Answered != 0 || rep.FailuresBy["407"] != 2 {
		t.Fatalf("calls without credentials were not challenged: %+v", rep)
	}

	wrong := anon
	wrong.Accounts = []loadAccount{{Username: accts[0].Username, Password: "not-the-password"}}
	rep, err = placeLoad(ctx, wrong)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Answered != 0 || rep.FailuresBy["403"] != 2 {
		t.Fatalf("wrong password: %+v", rep)
	}

	if _, err := prepareLoadAccounts(ctx, "", defaultLoadRealm, 3); err == nil {
		t.Fatal("no database accepted")
	}
}
