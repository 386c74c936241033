// Package vad is a voice activity detector for 8 kHz telephone audio in
// 20 ms frames. It runs on every inbound frame of a call, so it is pure Go,
// allocation-free per frame and cheap on silence.
//
// A frame counts as loud when its energy, measured after a 300 Hz high-pass
// (which removes DC, 50/60 Hz hum and its first harmonics, none of which carry
// telephone speech), stands ThresholdDB above an adaptive noise floor and
// above an absolute minimum. Loudness alone also fires on line noise, so a
// speech segment only starts once the loud run contains voiced frames:
// periodic (normalised autocorrelation peak at a pitch lag of 70–400 Hz) with
// a zero-crossing rate below that of noise. White and pink noise are neither;
// the noise floor absorbs anything stationary. A segment ends after Hangover
// of quiet frames, and both ends are reported at the frame where the loud run
// began or ended, not where the decision was taken.
package vad

import (
	"math"
	"time"
)

// Audio format the detector expects.
const (
	SampleRate    = 8000
	FrameSamples  = 160
	FrameDuration = 20 * time.Millisecond
)

// Pitch lags searched for voicing: 400 Hz down to 70 Hz.
const (
	minLag = SampleRate / 400
	maxLag = SampleRate / 70
)

// Config tunes the detector. The zero value of a field selects its default.
type Config struct {
	// ThresholdDB is how far above the noise floor a frame must be to count
	// as loud. Default 7 dB.
	ThresholdDB float64
	// MinLevelDBFS is the absolute level (RMS, dB relative to full scale)
	// below which a frame is never loud. Default -55 dBFS.
	MinLevelDBFS float64
	// InitialNoiseDBFS seeds the noise floor before any audio. Default -60 dBFS.
	InitialNoiseDBFS float64
	// MinSpeech is how long a loud run must last before it is speech.
	// Default 60 ms.
	MinSpeech time.Duration
	// Hangover is how long the level must stay low before speech ends.
	// Default 200 ms.
	Hangover time.Duration
	// VoicedFrames is how many voiced frames a loud run needs to become
	// speech. Default 2.
	VoicedFrames int
	// Voicing is the normalised autocorrelation a frame needs at some pitch
	// lag to be voiced, 0..1. Default 0.45.
	Voicing float64
	// MaxZCR is the highest zero-crossing rate (crossings per sample) of a
	// voiced frame. White noise sits near 0.5. Default 0.3.
	MaxZCR float64
	// MaxUnvoiced is how long a loud run may go without voicing before it is
	// taken for noise and the floor jumps to it. Default 600 ms.
	MaxUnvoiced time.Duration
}

func (c Config) withDefaults() Config {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.ThresholdDB, 7)
	def(&c.MinLevelDBFS, -55)
	def(&c.InitialNoiseDBFS, -60)
	def(&c.Voicing, 0.45)
	def(&c.MaxZCR, 0.3)
	if c.MinSpeech <= 0 {
		c.MinSpeech = 60 * time.Millisecond
	}
	if c.Hangover <= 0 {
		c.Hangover = 200 * time.Millisecond
	}
	if c.VoicedFrames <= 0 {
		c.VoicedFrames = 2
	}
	if c.MaxUnvoiced <= 0 {
		c.MaxUnvoiced = 600 * time.Millisecond
	}
	return c
}

// EventType says what Process observed.
type EventType uint8

const (
	None        EventType = iota
	SpeechStart           // speech began At
	SpeechEnd             // speech ended At
)

func (t EventType) String() string {
	switch t {
	case SpeechStart:
		return "speech_start"
	case SpeechEnd:
		return "speech_end"
	}
	return "none"
}

// Event is a speech boundary. At is an offset on the detector's audio
// timeline (the duration of audio processed before that sample), exact to
// the frame.
type Event struct {
	Type EventType
	At   time.Duration
}

// biquad is one second-order section (transposed direct form II).
type biquad struct {
	b0, b1, b2, a1, a2 float64
	z1, z2             float64
}

func highpass(fc, q float64) biquad {
	w := 2 * math.Pi * fc / SampleRate
	alpha := math.Sin(w) / (2 * q)
	cw := math.Cos(w)
	a0 := 1 + alpha
	return biquad{
		b0: (1 + cw) / 2 / a0,
		b1: -(1 + cw) / a0,
		b2: (1 + cw) / 2 / a0,
		a1: -2 * cw / a0,
		a2: (1 - alpha) / a0,
	}
}

func (f *biquad) step(x float64) float64 {
	y := f.b0*x + f.z1
	f.z1 = f.b1*x - f.a1*y + f.z2
	f.z2 = f.b2*x - f.a2*y
	return y
}

// Detector finds speech in a stream of frames. It is not safe for
// concurrent use; one detector serves one direction of one call.
type Detector struct {
	cfg Config

	hp1, hp2 biquad
	// hist holds the filtered signal: maxLag samples of history followed by
	// the current frame, for the pitch search.
	hist [maxLag + FrameSamples]float64

	elapsed time.Duration // audio processed so far
	floorDB float64
	levelDB float64
	voiced  bool

	speaking bool
	// A loud run being considered (not yet speech, or speech continuing).
	runStart  time.Duration
	runEnd    time.Duration // end of the run's last active frame
	runFrames int
	runVoiced int
	// lastLoud is the end of the last loud frame of the current segment.
	lastLoud time.Duration
	quiet    time.Duration // quiet audio since lastLoud while speaking
	segStart time.Duration
	// Stationarity of the segment: how long the level has stayed near statRef.
	statRef  float64
	statLen  time.Duration
	statFrom time.Duration
}

// New returns a detector; a zero Config gives the defaults.
func New(cfg Config) *Detector {
	d := &Detector{cfg: cfg.withDefaults()}
	d.Reset()
	return d
}

// Reset forgets all audio: the timeline restarts at zero and the noise floor
// at its initial value.
func (d *Detector) Reset() {
	cfg := d.cfg
	// A 4th-order Butterworth high-pass at 300 Hz as two biquads.
	*d = Detector{
		cfg:     cfg,
		hp1:     highpass(300, 0.5412),
		hp2:     highpass(300, 1.3066),
		floorDB: cfg.InitialNoiseDBFS,
		levelDB: -120,
	}
}

// Speaking reports whether the detector is inside a speech segment.
func (d *Detector) Speaking() bool { return d.speaking }

// Elapsed is the length of audio processed so far.
func (d *Detector) Elapsed() time.Duration { return d.elapsed }

// SpeechDuration is how long the current segment has lasted (0 when not
// speaking).
func (d *Detector) SpeechDuration() time.Duration {
	if !d.speaking {
		return 0
	}
	return d.elapsed - d.segStart
}

// LastActive is the offset on the detector's timeline where the current
// segment's last active frame ended (during the hangover it stays put while
// Elapsed grows), or where the last segment's did when not speaking. It lets
// a caller measure speech without the hangover's trailing silence.
func (d *Detector) LastActive() time.Duration { return d.lastLoud }

// LevelDBFS is the filtered level of the last frame.
func (d *Detector) LevelDBFS() float64 { return d.levelDB }

// NoiseFloorDBFS is the current noise floor estimate.
func (d *Detector) NoiseFloorDBFS() float64 { return d.floorDB }

// Voiced reports whether the last frame was voiced (judged only while
// looking for speech; false inside a segment).
func (d *Detector) Voiced() bool { return d.voiced }

// Process analyses one frame (normally FrameSamples long; other lengths are
// timed by their length, and at most FrameSamples of a longer frame are used
// for voicing) and reports a boundary if one was decided on this frame.
func (d *Detector) Process(frame []int16) Event {
	n := len(frame)
	if n == 0 {
		return Event{}
	}
	frameStart := d.elapsed
	d.elapsed += time.Duration(n) * time.Second / SampleRate

	// Filter into the history, keeping the last maxLag+FrameSamples samples.
	m := min(n, FrameSamples)
	copy(d.hist[:], d.hist[m:])
	cur := d.hist[len(d.hist)-m:]
	var sum float64
	crossings := 0
	prev := d.hist[len(d.hist)-m-1]
	for i, x := range frame {
		y := d.hp2.step(d.hp1.step(float64(x)))
		sum += y * y
		if j := i - (n - m); j >= 0 {
			cur[j] = y
			if (y >= 0) != (prev >= 0) {
				crossings++
			}
			prev = y
		}
	}
	ms := sum / float64(n)
	d.levelDB = -120
	if ms > 0 {
		d.levelDB = max(-120, 10*math.Log10(ms/(32768*32768)))
	}

	// Two thresholds: a frame must be fully loud to count toward voicing,
	// but a quieter one (contDB less) still extends a run or a segment.
	loud := d.levelDB > max(d.floorDB+d.cfg.ThresholdDB, d.cfg.MinLevelDBFS)
	active := d.levelDB > max(d.floorDB+d.cfg.ThresholdDB-contDB, d.cfg.MinLevelDBFS)
	d.voiced = false
	if loud && !d.speaking {
		// Only loud frames outside speech pay for the pitch search: voicing
		// decides starts, not ends.
		zcr := float64(crossings) / float64(m)
		d.voiced = zcr <= d.cfg.MaxZCR && d.periodicity(m) >= d.cfg.Voicing
	}

	if d.speaking {
		return d.continueSpeech(active)
	}
	return d.seekSpeech(active, loud, frameStart)
}

// maxRunGap is how long a candidate run may dip below the threshold without
// losing its start: plosive closures and the gap after an initial consonant.
const maxRunGap = 40 * time.Millisecond

// contDB is how far below the start threshold a frame may be and still
// extend a run or a segment, so soft onsets and decays stay on the timeline.
const contDB = 5.0

func (d *Detector) seekSpeech(active, loud bool, frameStart time.Duration) Event {
	if !active {
		d.adaptFloor(false)
		if d.runFrames > 0 && d.elapsed-d.runEnd > maxRunGap {
			d.runFrames, d.runVoiced = 0, 0
		}
		return Event{}
	}
	if d.runFrames == 0 {
		d.runStart = frameStart
	}
	d.runFrames++
	d.runEnd = d.elapsed
	if d.voiced {
		d.runVoiced++
	}
	runLen := d.elapsed - d.runStart
	if runLen >= d.cfg.MinSpeech && d.runVoiced >= d.cfg.VoicedFrames {
		d.speaking = true
		d.segStart = d.runStart
		d.lastLoud = d.elapsed
		d.quiet = 0
		d.statRef, d.statLen, d.statFrom = d.levelDB, 0, d.elapsed
		return Event{Type: SpeechStart, At: d.runStart}
	}
	if d.runVoiced == 0 && runLen >= d.cfg.MaxUnvoiced {
		// Loud for a long time and never voiced: noise got louder. Take it
		// as the new floor rather than waiting for the slow climb.
		d.floorDB = d.levelDB - 3
		d.runFrames = 0
		return Event{}
	}
	d.adaptFloor(true)
	return Event{}
}

// Stationary audio is not speech, whatever its pitch: a segment whose level
// stays within stationaryDB for stationaryFor is a tone or hum (a dial tone,
// mains buzz) that got past the start checks. It ends, and the floor rises
// to it.
const (
	stationaryDB  = 2.0
	stationaryFor = 800 * time.Millisecond
)

func (d *Detector) continueSpeech(active bool) Event {
	if math.Abs(d.levelDB-d.statRef) <= stationaryDB {
		d.statLen += d.elapsed - d.statFrom
	} else {
		d.statRef, d.statLen = d.levelDB, 0
	}
	d.statFrom = d.elapsed
	if active && d.statLen >= stationaryFor {
		d.speaking = false
		d.runFrames, d.runVoiced = 0, 0
		d.floorDB = d.levelDB - 1
		return Event{Type: SpeechEnd, At: max(d.segStart, d.elapsed-d.statLen)}
	}
	if active {
		d.lastLoud = d.elapsed
		d.quiet = 0
		return Event{}
	}
	d.quiet = d.elapsed - d.lastLoud
	if d.quiet < d.cfg.Hangover {
		return Event{}
	}
	d.speaking = false
	d.runFrames, d.runVoiced = 0, 0
	return Event{Type: SpeechEnd, At: d.lastLoud}
}

// warmUp is how long after the start the floor rises quickly on unvoiced
// audio: a line's noise is learnt in a few frames instead of seconds.
const warmUp = 300 * time.Millisecond

// adaptFloor moves the noise floor toward the current level outside speech:
// down quickly on quiet frames (a quieter line is certain), up slowly. A
// frame of a candidate run does not raise it (it may be the onset of
// speech), except during the warm-up, when the floor has yet to find the
// line's noise; noise that gets louder later is caught by MaxUnvoiced.
func (d *Detector) adaptFloor(active bool) {
	diff := d.levelDB - d.floorDB
	switch {
	case diff < 0:
		d.floorDB += diff * 0.2
	case !active:
		d.floorDB += diff * 0.05
	case d.elapsed <= warmUp && !d.voiced:
		d.floorDB += diff * 0.3
	}
}

// periodicity is the highest normalised autocorrelation of the current
// frame (the last m samples of hist) against itself delayed by a pitch lag.
func (d *Detector) periodicity(m int) float64 {
	h := d.hist[:]
	end := len(h)
	begin := end - m
	var e0 float64
	for _, x := range h[begin:end] {
		e0 += x * x
	}
	if e0 == 0 {
		return 0
	}
	// Energy of the delayed window, updated incrementally as the lag grows.
	var el float64
	for _, x := range h[begin-minLag : end-minLag] {
		el += x * x
	}
	best := 0.0
	for lag := minLag; lag <= maxLag && begin-lag >= 0; lag++ {
		if lag > minLag {
			in, out := h[begin-lag], h[end-lag]
			el += in*in - out*out
		}
		if el <= 0 {
			continue
		}
		var c float64
		a, b := h[begin:end], h[begin-lag:end-lag]
		for i := range a {
			c += a[i] * b[i]
		}
		if c <= 0 {
			continue
		}
		if r := c / math.Sqrt(e0*el); r > best {
			best = r
		}
	}
	return best
}
