package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/voxbridge/voxbridge/store"
)

// runNumbers serves "voxbridge numbers": add|list|delete on the database
// file, list|create|delete over the API (see useAPI for which).
func runNumbers(args []string, env cliEnv) error {
	return dispatchResource("numbers", args, env, map[string]func([]string, cliEnv) error{
		"add": numbersAdd, "list": numbersList, "delete": numbersDelete,
	}, map[string]func([]string, cliEnv) error{
		"list": apiListCommand("numbers", func(tw *tabwriter.Writer, all []store.Number) {
			fmt.Fprintln(tw, "NUMBER\tKIND\tTARGET\tTRUNK ID")
			for _, n := range all {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Number, n.Kind, n.Target, dash(n.TrunkID))
			}
		}),
		"create": fileCreateCommand("numbers", "the API's number object", func(path string) (string, any, error) {
			return readResourceFile(path, "number")
		}),
		"delete": apiDeleteCommand("numbers"),
	})
}

func numbersAdd(args []string, env cliEnv) error {
	fs := flag.NewFlagSet("numbers add", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	db := dbFlag(fs, env)
	number := fs.String("number", "", "the number (DID), e.g. +14155550100 (required)")
	toFlow := fs.String("flow", "", "run this flow (id)")
	toAgent := fs.String("agent", "", "hand the call to this agent (id)")
	toExt := fs.String("extension", "", "ring this extension (number)")
	trunk := fs.String("trunk", "", "the trunk that delivers the number (name; default any)")
	asJSON := fs.Bool("json", false, "print the stored number as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: voxbridge numbers add --number N --flow ID|--agent ID|--extension EXT [--trunk NAME]")
		fs.PrintDefaults()
	}
	if err := parseNumber(fs, args, number); err != nil {
		return err
	}
	n := &store.Number{Number: *number}
	set := 0
	for kind, target := range map[store.NumberKind]string{store.NumberToFlow: *toFlow, store.NumberToAgent: *toAgent, store.NumberToExtension: *toExt} {
		if target != "" {
			n.Kind, n.Target = kind, target
			set++
		}
	}
	if set != 1 {
		return errors.New("numbers add: give exactly one of --flow, --agent, --extension")
	}
	st, err := openCLIStore(*db)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	if *trunk != "" {
		t, err := st.TrunkByName(ctx, *trunk)
		if err != nil {
			return describeErr("trunk "+*trunk, err)
		}
		n.TrunkID = t.ID
	}
	if err := st.PutNumber(ctx, n); err != nil {
		return describeErr("number "+*number, err)
	}
	if *asJSON {
		return printJSON(env.stdout, n)
	}
	fmt.Fprintf(env.stdout, "number %s → %s %s\n", n.Number, n.Kind, n.Target)
	return nil
}

var numbersList = listCommand("numbers",
	func(ctx context.Context, st *store.DB) ([]store.Number, error) { return pages(ctx, st.ListNumbers) },
	func(tw *tabwriter.Writer, st *store.DB, all []store.Number) error {
		trunks, err := pages(context.Background(), st.ListTrunks)
		if err != nil {
			return err
		}
		names := map[string]string{}
		for _, t := range trunks {
			names[t.ID] = t.Name
		}
		fmt.Fprintln(tw, "NUMBER\tKIND\tTARGET\tTRUNK")
		for _, n := range all {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Number, n.Kind, n.Target, dash(names[n.TrunkID]))
		}
		return nil
	})

var numbersDelete = deleteCommand("numbers", "number", func(ctx context.Context, st *store.DB, number string) (string, error) {
	if err := st.DeleteNumber(ctx, number); err != nil {
		return "", describeErr("number "+number, err)
	}
	return "number " + number + " deleted", nil
})
