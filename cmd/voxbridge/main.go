// Command voxbridge is a self-hosted voice server: it answers and places
// SIP calls, carries their G.711 audio, runs flows and AI agents on them
// and keeps every call in SQLite.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `voxbridge: a self-hosted SIP voice server

Usage:
  voxbridge serve [flags]          run the server (SIP, RTP, HTTP API)
  voxbridge dial [flags] <sip-uri> call a SIP URI as a test phone
  voxbridge flows validate FILE... check flow files (JSON or YAML) offline
  voxbridge flows list|create|delete
                                   flows on a running server (--api, --key)
  voxbridge calls list|get         calls on a running server (--api, --key)
  voxbridge calls dial --to X [--flow ID|--agent ID]
                                   start an outbound call on a running server
  voxbridge calls hangup|transfer|talk|dtmf|mute|unmute|hold|unhold ID
                                   act on a live call (--api, --key)
  voxbridge calls recording|capture ID -o FILE
                                   download a call's recording (WAV) or pcap
  voxbridge agents list|create|delete
                                   agents on a running server (--api, --key)
  voxbridge tasks list|get|create|execute|cancel|delete
                                   scheduled outbound calls (--api, --key)
  voxbridge keys create|list|revoke
                                   API keys in the database (--db)
  voxbridge load [flags]           place many test calls against a server and report
  voxbridge replay [flags] FILE    RTP streams of a pcap/pcapng through the jitter buffer
  voxbridge extensions add|list|delete
                                   phone accounts in the database (--db)
  voxbridge trunks add|list|delete carrier trunks in the database
  voxbridge numbers add|list|delete
                                   numbers (DIDs) and what they run
  voxbridge extensions|trunks|numbers list|create FILE|delete
                                   the same on a running server: with --api,
                                   or VOXBRIDGE_API_URL set and no --db
  voxbridge version                print the version

Run "voxbridge <command> -h" for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		err = runServe(args)
	case "dial":
		err = runDial(args, os.Stdout)
	case "flows":
		err = runFlows(args, os.Stdout)
	case "load":
		err = runLoad(args, os.Stdout)
	case "replay":
		err = runReplay(args, os.Stdout)
	case "extensions":
		err = runExtensions(args, osCLIEnv())
	case "trunks":
		err = runTrunks(args, osCLIEnv())
	case "numbers":
		err = runNumbers(args, osCLIEnv())
	case "keys":
		err = runKeys(args, osCLIEnv())
	case "calls":
		err = runCalls(args, osCLIEnv())
	case "agents":
		err = runAgents(args, osCLIEnv())
	case "tasks":
		err = runTasks(args, osCLIEnv())
	case "version":
		fmt.Println("voxbridge", version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "voxbridge: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return // -h printed the command's usage: not a failure
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "voxbridge:", err)
		os.Exit(1)
	}
}
