package main

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A small load run against an echo flow: every call answered, its tone
// echoed, no RTP lost on loopback.
func TestLoadAgainstEcho(t *testing.T) {
	echo := mustFlow(t, `{"id":"echo","actions":[{"type":"answer"},{"type":"echo","option":{"duration_ms":60000,"end_on_dtmf":false}}]}`)
	inst, _ := testServer(t, echo)
	rep, err := placeLoad(context.Background(), loadConfig{
		Target: fmt.Sprintf("sip:echo@127.0.0.1:%d", inst.SIPUDP.Port), Calls: 6, Concurrency: 3,
		Rate: 10, Hold: 2 * time.Second, ToneHz: 1000, Expect: true, LocalIP: "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Answered != 6 || rep.Failed != 0 || rep.AudioOK != 6 {
		t.Fatalf("report: %+v", rep)
	}
	if rep.MaxLive > 3 || rep.MaxLive < 2 {
		t.Fatalf("concurrency not respected: max live %d", rep.MaxLive)
	}
	if rep.PacketsIn < 6*80 || rep.LossPct != 0 {
		t.Fatalf("RTP: in %d, loss %.2f %%", rep.PacketsIn, rep.LossPct)
	}
	if rep.SetupMSP50 <= 0 || rep.SetupMSP99 < rep.SetupMSP50 {
		t.Fatalf("setup percentiles: %+v", rep)
	}
}
