package siptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/sip/sdp"
)

// DialEarlyMedia calls uri like Dial, and plays early media as a phone
// does: the call's media starts on the first provisional response that
// carries an SDP answer (183 Session Progress) and goes on after the 200.
// The 200 must repeat the early SDP answer exactly (RFC 3261 §13.2.1), or
// the call fails. It returns the audio heard before the 200 apart; Heard
// has all of it.
func (p *Phone) DialEarlyMedia(ctx context.Context, uri string, opt DialOptions) (*Call, []int16, error) {
	var recipient sip.Uri
	if err := sip.ParseUri(uri, &recipient); err != nil {
		return nil, nil, fmt.Errorf("dial: bad URI %q: %w", uri, err)
	}
	codecs := opt.Codecs
	if len(codecs) == 0 {
		codecs = []sdp.Codec{sdp.PCMU, sdp.PCMA}
	}
	rtpConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: p.ip})
	if err != nil {
		return nil, nil, fmt.Errorf("dial: rtp socket: %w", err)
	}
	ip, _ := netip.AddrFromSlice(p.ip)
	local := sdp.Local{Address: ip.Unmap(), Port: rtpConn.LocalAddr().(*net.UDPAddr).Port,
		SessionID: rand.Uint64N(1 << 62), Version: 1, Codecs: codecs, Ptime: 20, UserAgent: "phone"}
	if !opt.NoDTMF {
		local.DTMFPayloadType = 101
	}
	start := time.Now()
	hdrs := append([]sip.Header{sip.NewHeader("Content-Type", "application/sdp")}, opt.Headers...)
	dlg, err := p.dialogs.Invite(ctx, recipient, sdp.Build(local), hdrs...)
	if err != nil {
		rtpConn.Close()
		return nil, nil, fmt.Errorf("dial: invite: %w", err)
	}
	c := &Call{dlg: dlg, callID: dlg.InviteRequest.CallID().Value()}
	var earlySDP []byte
	fail := func(err error) (*Call, []int16, error) {
		if c.stream != nil {
			c.Close() // closes rtpConn with the stream
		} else {
			rtpConn.Close()
			dlg.Close()
		}
		return nil, nil, err
	}
	err = dlg.WaitAnswer(ctx, sipgo.AnswerOptions{Username: opt.Username, Password: opt.Password, OnResponse: func(res *sip.Response) error {
		if !res.IsProvisional() || res.StatusCode == 100 {
			return nil
		}
		if c.Ringing == 0 {
			c.Ringing = time.Since(start)
		}
		if opt.OnProvisional != nil {
			opt.OnProvisional(res.StatusCode)
		}
		if c.stream == nil && len(res.Body()) > 0 {
			earlySDP = append([]byte(nil), res.Body()...)
			return c.startMedia(rtpConn, earlySDP, codecs)
		}
		return nil
	}})
	if err != nil {
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) {
			return fail(&DialError{Code: de.Res.StatusCode, Reason: de.Res.Reason})
		}
		return fail(fmt.Errorf("dial: %w", err))
	}
	c.Answered = time.Since(start)
	var early []int16
	if c.stream != nil {
		early = c.Heard()
	}
	if err := dlg.Ack(ctx); err != nil {
		return fail(fmt.Errorf("dial: ack: %w", err))
	}
	if c.stream == nil {
		if err := c.startMedia(rtpConn, dlg.InviteResponse.Body(), codecs); err != nil {
			_ = dlg.Bye(context.Background())
			return fail(err)
		}
	} else if !bytes.Equal(dlg.InviteResponse.Body(), earlySDP) {
		_ = dlg.Bye(context.Background())
		return fail(fmt.Errorf("dial: the 200's SDP differs from the 183's:\n%s\nvs\n%s", dlg.InviteResponse.Body(), earlySDP))
	}
	p.trackDialed(c) // it answers re-INVITEs (reinvite.go)
	return c, early, nil
}
