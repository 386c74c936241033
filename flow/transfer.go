package flow

import "context"

// Transfer modes.
const (
	TransferBlind = "blind"
	TransferWarm  = "warm"
)

// TransferOption hands the caller to another destination.
type TransferOption struct {
	Destination ConnectDestination `json:"destination"`
	// Mode is blind (default): the caller is bridged to the destination
	// as soon as it answers, and the flow ends with that bridge. Warm
	// (talk to the destination first) is refused until it exists.
	Mode string `json:"mode,omitempty"`
}

func init() { actionTypes["transfer"] = define(compileTransfer) }

func compileTransfer(o *TransferOption) (step, error) {
	if err := checkDestination(o.Destination); err != nil {
		return step{}, badField("destination."+err.field, "%s", err.msg)
	}
	switch o.Mode {
	case "", TransferBlind:
	case TransferWarm:
		return step{}, badField("mode", "warm transfer is not supported yet; use blind")
	default:
		return step{}, badField("mode", "must be blind or warm, not %q", o.Mode)
	}
	// A blind transfer is a re-bridge: we stay in the media path (no
	// REFER), so the call keeps its record, recording and limits. It
	// rings like a one-destination connect and ends the flow once bridged.
	p := connectPlan{dests: []ConnectDestination{o.Destination}, ring: RingAll, timeout: DefaultRingTimeout, relay: true, system: true}
	return seq(DefaultRingTimeout+maxBridge, func(ctx context.Context, r *run) (string, error) {
		return "", r.c.connect(ctx, p)
	}), nil
}
