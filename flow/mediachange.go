package flow

import (
	"fmt"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/store"
)

// Hold events: a party put the call on hold or took it off, by re-INVITE
// or UPDATE. Data: {"by": "remote"|"local"}.
const (
	EventCallHold   = "call.hold"
	EventCallUnhold = "call.unhold"
)

// Variables the hold state is recorded in (and so on the call record).
const (
	VarRemoteHold = "call.remote_hold" // "true" while the caller holds us
	VarHoldCount  = "call.hold_count"  // holds by either side so far
)

// natLatch is how long after answer a NATed caller's RTP source is learned
// (media.LatchConfig); the rule that several consecutive packets are
// needed, and that a working SDP address locks at once, keeps it safe to
// have on.
var natLatch = media.LatchConfig{Window: media.DefaultLatchWindow, Packets: media.DefaultLatchPackets}

// watchMediaChanges has the call's dialog report re-INVITE/UPDATE media
// changes to onMediaChange. Called once the stream exists.
func (c *Call) watchMediaChanges() {
	if d, ok := c.dlg.(interface{ OnMediaChange(func(sip.MediaChange)) }); ok {
		d.OnMediaChange(c.onMediaChange)
	}
}

// onMediaChange applies a media change to the stream: the new address and
// codec, and no sending while the caller holds. It runs on SIP's goroutine
// right after the 2xx, so the stream follows at once; the record and the
// bus hear of hold changes.
func (c *Call) onMediaChange(ch sip.MediaChange) {
	st := c.stream
	if st == nil {
		return
	}
	if ch.AddressChanged {
		if err := st.SetRemote(ch.Media.RemoteAddr, ch.Media.RemoteRTCPAddr); err != nil {
			c.log.Warn("media change: new address refused", "remote", ch.Media.RemoteAddr, "err", err)
		}
	}
	if ch.CodecChanged {
		codec, err := media.CodecByName(ch.Media.Codec.Name, ch.Media.Codec.PayloadType)
		if err == nil {
			err = st.SetCodec(codec)
		}
		if err != nil {
			c.log.Warn("media change: codec refused", "codec", ch.Media.Codec.Name, "err", err)
		} else {
			c.update(func(r *store.Call) { r.Codec = codec.Name })
		}
	}
	wasRemote := st.RemoteHeld()
	st.SetRemoteHold(ch.RemoteHold)
	c.log.Info("media changed", "remote", ch.Media.RemoteAddr, "codec", ch.Media.Codec.Name,
		"remote_hold", ch.RemoteHold, "local_hold", ch.LocalHold)

	c.mu.Lock()
	prevLocal := c.localHeld
	c.localHeld = ch.LocalHold
	c.mu.Unlock()
	for _, h := range []struct {
		by       string
		was, now bool
	}{{"remote", wasRemote, ch.RemoteHold}, {"local", prevLocal, ch.LocalHold}} {
		if h.was == h.now {
			continue
		}
		if h.now {
			c.publish(EventCallHold, map[string]string{"by": h.by})
			c.setVar(VarHoldCount, fmt.Sprint(c.holdCount()+1))
		} else {
			c.publish(EventCallUnhold, map[string]string{"by": h.by})
		}
	}
	if wasRemote != ch.RemoteHold {
		c.setVar(VarRemoteHold, fmt.Sprint(ch.RemoteHold))
	}
	vars := c.vars() // outside update: it holds c.mu
	c.update(func(r *store.Call) { r.Variables = vars })
}

func (c *Call) holdCount() int {
	n := 0
	fmt.Sscan(c.vars()[VarHoldCount], &n)
	return n
}
