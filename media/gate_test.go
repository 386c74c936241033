package media_test

import (
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/rtptest"
)

// waitFrames reads b's frames until ok has held for n frames in a row.
func waitFrames(t *testing.T, b *media.Stream, what string, n int, ok func([]int16) bool) {
	t.Helper()
	run := 0
	for i := 0; run < n; i++ {
		if i > 1000 {
			t.Fatalf("never %d frames of %s", n, what)
		}
		if ok(nextFrame(t, b)) {
			run++
		} else {
			run = 0
		}
	}
}

func is400(f []int16) bool {
	return media.ToneLevel(f, 400) > 0.3 && media.ToneLevel(f, 1000) < 0.05
}

func TestMuteOutSilencesWhatIsSent(t *testing.T) {
	a, b := rtptest.Pair(t, media.PCMU, 0)
	a.Enqueue(media.Tone(1000, 20*time.Second, 0.5))
	waitFrames(t, b, "tone", 5, isTone)
	a.SetMute(false, true)
	if in, out := a.Muted(); in || !out {
		t.Fatalf("Muted() = %v, %v", in, out)
	}
	waitFrames(t, b, "silence while muted out", 25, isSilent)
	a.SetMute(false, false)
	waitFrames(t, b, "tone after unmute", 5, isTone)
}

func TestMuteInSilencesWhatIsReceived(t *testing.T) {
	a, b := rtptest.Pair(t, media.PCMU, 0)
	a.Enqueue(media.Tone(1000, 20*time.Second, 0.5))
	waitFrames(t, b, "tone", 5, isTone)
	b.SetMute(true, false)
	waitFrames(t, b, "silence while muted in", 25, isSilent)
	if st := b.Stats(); st.PacketsIn == 0 {
		t.Fatal("nothing received")
	}
	b.SetMute(false, false)
	waitFrames(t, b, "tone after unmute", 5, isTone)
}

// Holding the peer plays the loop instead of the queue, keeps the queue's
// place, and silences what the peer says; unholding plays the rest.
func TestHoldPeerPausesQueue(t *testing.T) {
	a, b := rtptest.Pair(t, media.PCMU, 0)
	const toneFrames = 50 // 1 s
	done := a.Enqueue(media.Tone(1000, toneFrames*media.FrameDuration, 0.5))
	b.Enqueue(media.Tone(1000, 30*time.Second, 0.5)) // the held party talks
	heard := 0
	for heard < 5 {
		if isTone(nextFrame(t, b)) {
			heard++
		}
	}
	a.HoldPeer(media.Tone(400, 200*time.Millisecond, 0.5))
	if !a.PeerHeld() {
		t.Fatal("PeerHeld false after HoldPeer")
	}
	// Tone frames already in flight still count as heard.
	for run := 0; run < 50; {
		f := nextFrame(t, b)
		switch {
		case is400(f):
			run++
		case isTone(f):
			heard++
			run = 0
		}
	}
	waitFrames(t, a, "silence from the held party", 25, isSilent)
	select {
	case <-done:
		t.Fatal("the queued tone finished while on hold")
	default:
	}
	a.UnholdPeer()
	timeout := time.After(wait)
	for {
		select {
		case <-done:
			// The tone resumed where it paused: all of it was heard, once.
			for range 10 {
				if isTone(nextFrame(t, b)) {
					heard++
				}
			}
			if heard < toneFrames-4 || heard > toneFrames+2 {
				t.Fatalf("heard %d tone frames around the hold, want about %d", heard, toneFrames)
			}
			waitFrames(t, a, "the party after unhold", 5, isTone)
			return
		case <-timeout:
			t.Fatal("the queued tone never finished after unhold")
		default:
		}
		if isTone(nextFrame(t, b)) {
			heard++
		}
	}
}
