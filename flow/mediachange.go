package flow

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/sip/sdp"
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
	d, ok := c.dlg.(interface {
		OnMediaChange(func(sip.MediaChange))
		Media() sdp.Negotiated
	})
	if !ok {
		return
	}
	d.OnMediaChange(c.onMediaChange)
	if c.orig != nil {
		// The callee answered before this watch began and may have
		// re-INVITEd in between: the stream follows what is in force.
		// (An inbound call's watch begins before its answer; its stream
		// may have latched a NATed source that this would undo.)
		if err := followMedia(c.stream, d.Media()); err != nil {
			c.log.Warn("media change: not followed", "err", err)
		}
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
	codec, wasRemote := applyMediaChange(st, ch, c.log)
	if codec != "" {
		c.update(func(r *store.Call) { r.Codec = codec })
	}

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

// onMediaChange is a bridged leg's: its stream follows the callee's new
// address, codec and hold like a call's does, and its record and the bus
// hear of it. Before the stream exists there is nothing to move: the
// stream opens on the media in force (openStream, startMedia).
func (b *bLeg) onMediaChange(ch sip.MediaChange) {
	b.mediaMu.Lock()
	st := b.stream
	var codec string
	wasRemote := ch.RemoteHold
	if st != nil {
		codec, wasRemote = applyMediaChange(st, ch, b.log)
	}
	b.mediaMu.Unlock()
	if codec != "" {
		b.update(func(r *store.Call) { r.Codec = codec })
	}
	switch {
	case wasRemote == ch.RemoteHold:
	case ch.RemoteHold:
		b.c.ct.cfg.Bus.Publish(EventCallHold, b.rec.ID, map[string]string{"by": "remote"})
	default:
		b.c.ct.cfg.Bus.Publish(EventCallUnhold, b.rec.ID, map[string]string{"by": "remote"})
	}
}

// applyMediaChange points st at what ch names: the new address (only when
// it changed, so a latched NAT source survives a hold), the new codec, and
// no sending while the peer holds. It returns the new codec's name when
// the codec changed, and whether the peer held before.
func applyMediaChange(st *media.Stream, ch sip.MediaChange, log *slog.Logger) (codec string, wasRemote bool) {
	if ch.AddressChanged {
		if err := st.SetRemote(ch.Media.RemoteAddr, ch.Media.RemoteRTCPAddr); err != nil {
			log.Warn("media change: new address refused", "remote", ch.Media.RemoteAddr, "err", err)
		}
	}
	if ch.CodecChanged {
		c, err := media.CodecByName(ch.Media.Codec.Name, ch.Media.Codec.PayloadType)
		if err == nil {
			err = st.SetCodec(c)
		}
		if err != nil {
			log.Warn("media change: codec refused", "codec", ch.Media.Codec.Name, "err", err)
		} else {
			codec = c.Name
		}
	}
	wasRemote = st.RemoteHeld()
	st.SetRemoteHold(ch.RemoteHold)
	log.Info("media changed", "remote", ch.Media.RemoteAddr, "codec", ch.Media.Codec.Name,
		"remote_hold", ch.RemoteHold, "local_hold", ch.LocalHold)
	return codec, wasRemote
}

// followMedia points st at the media n describes when it differs from
// what st does now: for a stream opened before the dialog's latest offer
// and answer took effect. Only for streams that do not latch a NATed
// source.
func followMedia(st *media.Stream, n sdp.Negotiated) error {
	remote := netip.AddrPortFrom(n.RemoteAddr.Addr().Unmap(), n.RemoteAddr.Port())
	if remote.IsValid() && !remote.Addr().IsUnspecified() && remote != st.Remote() {
		if err := st.SetRemote(remote, n.RemoteRTCPAddr); err != nil {
			return err
		}
	}
	if cur := st.Codec(); cur.Name != n.Codec.Name || cur.PayloadType != n.Codec.PayloadType {
		codec, err := media.CodecByName(n.Codec.Name, n.Codec.PayloadType)
		if err != nil {
			return err
		}
		if err := st.SetCodec(codec); err != nil {
			return err
		}
	}
	st.SetRemoteHold(peerHolds(n))
	return nil
}

// peerHolds: the peer's media says not to send to it (sip's rule for a
// MediaChange's RemoteHold, read from media in force).
func peerHolds(n sdp.Negotiated) bool {
	return n.RemoteDirection == sdp.SendOnly || n.RemoteDirection == sdp.Inactive ||
		n.RemoteAddr.Addr().IsUnspecified()
}

func (c *Call) holdCount() int {
	n := 0
	fmt.Sscan(c.vars()[VarHoldCount], &n)
	return n
}
