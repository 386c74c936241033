package media_test

import (
	"slices"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/rtptest"
)

// The ring starts small and grows when jitter needs it; whatever the
// traffic, the audio played and the statistics must be exactly those of a
// ring allocated at full size, and a clean stream must not grow it.
func TestReceiverRingGrowsTransparently(t *testing.T) {
	tone := rtptest.ToneBursts(1000, 1200*time.Millisecond, 800*time.Millisecond)
	cases := []struct {
		name string
		prof rtptest.Profile
		cfg  media.ReceiverConfig
		grow bool
	}{
		{"clean", rtptest.Profile{Seed: 1, Duration: 20 * time.Second, BaseDelay: 30 * time.Millisecond, Audio: tone},
			media.ReceiverConfig{Codec: media.PCMU}, false},
		{"jitter 120ms", rtptest.Profile{Seed: 2, Duration: 20 * time.Second, BaseDelay: 40 * time.Millisecond,
			Jitter: 120 * time.Millisecond, Duplicate: 0.02, Loss: 0.01, Audio: tone},
			media.ReceiverConfig{Codec: media.PCMU}, true},
		{"max delay 1s, jitter 400ms, ptime 60", rtptest.Profile{Seed: 3, Duration: 20 * time.Second, Ptime: 60 * time.Millisecond,
			BaseDelay: 40 * time.Millisecond, Jitter: 400 * time.Millisecond, Audio: tone},
			media.ReceiverConfig{Codec: media.PCMU, MaxDelay: time.Second}, true},
		{"ssrc change and silences", rtptest.Profile{Seed: 4, Duration: 20 * time.Second, BaseDelay: 40 * time.Millisecond,
			Jitter: 90 * time.Millisecond, SSRCChangeAt: 9 * time.Second, ComfortNoise: true,
			Silences: []rtptest.Span{{From: 3 * time.Second, To: 5 * time.Second}}, Audio: tone},
			media.ReceiverConfig{Codec: media.PCMU}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := rtptest.Generate(tc.prof)
			run := func(r *media.Receiver) ([]int16, media.ReceiveStats) {
				var audio []int16
				media.PlaySimulated(r, tr.Arrivals(), func(_ time.Time, f []int16) { audio = append(audio, f...) })
				return audio, r.Stats()
			}
			small := media.NewReceiver(tc.cfg)
			startLen := small.RingLen()
			got, gotSt := run(small)
			want, wantSt := run(media.NewReceiverFullRing(tc.cfg))
			if grew := small.RingLen() > startLen; grew != tc.grow {
				t.Errorf("ring %d samples at the start, %d at the end: grew %v, want %v", startLen, small.RingLen(), grew, tc.grow)
			}
			if len(got) != len(want) || !slices.Equal(got, want) {
				i := 0
				for i < min(len(got), len(want)) && got[i] == want[i] {
					i++
				}
				t.Fatalf("growing ring played %d samples, full ring %d; first difference at sample %d", len(got), len(want), i)
			}
			if gotSt != wantSt {
				t.Errorf("stats differ:\n growing %+v\n full    %+v", gotSt, wantSt)
			}
			if media.ToneLevel(want, 1000) == 0 {
				t.Errorf("no tone played: the comparison proves nothing")
			}
			t.Logf("ring %d -> %d samples; late %d, discarded %d, concealed %.0f ms", startLen, small.RingLen(), gotSt.Late, gotSt.Discarded, gotSt.ConcealedMS)
		})
	}
}
