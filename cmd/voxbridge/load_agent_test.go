package main

import (
	"context"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/flow"
)

// The agent load's callers against an in-process server (the command runs
// the same server as a child): every call is answered and hears the agent,
// every caller turn gets an answer with a stored latency row, and the
// rows add up the fakes' fixed latencies.
func TestAgentLoadCallers(t *testing.T) {
	fp, def, err := startFakes(loadAgentDefinition(), fakeScript{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fp.Close)
	agents := flow.NewAgents()
	if err := agents.Put(def); err != nil {
		t.Fatal(err)
	}
	f := mustFlow(t, `{"id":"agent","actions":[{"type":"answer"},{"type":"ai_talk","option":{"agent_id":"load"}},{"type":"hangup"}]}`)
	inst, _ := testServerWith(t, instanceOptions{flow: f, agents: agents}, nil)

	cfg := agentLoadConfig{Calls: 3, Concurrency: 3, Rate: 10, Hold: 9500 * time.Millisecond,
		TurnEvery: 3 * time.Second, Speech: 800 * time.Millisecond, LocalIP: "127.0.0.1", toneHz: 440}
	results, maxLive := placeAgentCalls(context.Background(), target(inst, "agent"), cfg)
	rows, err := agentLatencyRows(context.Background(), inst.db, results)
	if err != nil {
		t.Fatal(err)
	}
	rep := &agentLoadReport{FailuresBy: map[string]int{}}
	summarizeAgentLoad(rep, results, rows)
	if rep.Answered != 3 || rep.Failed != 0 || rep.AgentHeard != 3 || maxLive < 2 {
		t.Fatalf("calls: %+v, max live %d", rep, maxLive)
	}
	if rep.CallerTurns != 6 || rep.LatencyRows != rep.CallerTurns {
		t.Fatalf("%d caller turns, %d latency rows; want 2 turns per call, each answered", rep.CallerTurns, rep.LatencyRows)
	}
	// STT final 200 ms, first token 300 ms, first audio 150 ms: the
	// endpoint waits for the final, so a turn takes at least the last two
	// on top of the endpoint.
	if rep.LLMP50 < 300 || rep.TTSP50 < 150 || rep.STTP50 < 200 || rep.V2VP50MS < rep.EndpointP50+450 || rep.V2VP95MS > 5000 {
		t.Fatalf("latency: %+v", rep)
	}
}
