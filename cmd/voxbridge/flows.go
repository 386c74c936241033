package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/voxbridge/voxbridge/flow"
)

// runFlows serves `voxbridge flows validate FILE...`: each file is parsed
// and validated offline, as the server would when loading it. The other
// verbs (list, create, delete) go through a server's API.
func runFlows(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "validate" {
		env := osCLIEnv()
		env.stdout = out
		return runFlowsAPI(args, env)
	}
	if len(args) < 2 {
		return errors.New("usage: voxbridge flows validate FILE...")
	}
	bad := 0
	for _, path := range args[1:] {
		f, err := flow.ParseFile(path)
		if err == nil {
			err = f.Validate()
		}
		if err != nil {
			fmt.Fprintf(out, "%s: %v\n", path, err)
			bad++
			continue
		}
		fmt.Fprintf(out, "%s: ok (flow %q, %d actions)\n", path, f.ID, len(f.Actions))
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d flow files invalid", bad, len(args)-1)
	}
	return nil
}
