package media

const (
	maxDropout  = 3000 // RFC 3550 A.1: forward jumps up to this are loss
	maxMisorder = 100  // backward steps up to this are reordering; more is a jump
	seenBits    = 1024 // how far back duplicates are recognised
	noBadSeq    = 1 << 16
)

// seqVerdict is what seqTracker.update decided about one packet.
type seqVerdict uint8

const (
	seqNew       seqVerdict = iota // newest so far (possibly after a gap)
	seqReordered                   // older than the newest, first time seen
	seqDuplicate                   // seen before
	seqJump                        // a big jump not yet confirmed: discard
	seqRestart                     // a big jump confirmed by the next packet: the sender restarted
)

// seqTracker extends 16-bit sequence numbers (RFC 3550 A.1) for one source
// epoch and counts what is needed for loss: the lowest and highest extended
// sequence number and how many distinct ones arrived.
type seqTracker struct {
	init     bool
	base     int64 // lowest extended seq seen
	max      int64 // highest extended seq seen
	received uint64
	badSeq   uint32
	seen     [seenBits / 64]uint64 // bit (ext mod seenBits) for ext in (max-seenBits, max]
}

func (t *seqTracker) reset(seq uint16) {
	*t = seqTracker{init: true, base: int64(seq), max: int64(seq), received: 1, badSeq: noBadSeq}
	t.mark(int64(seq))
}

// Bit positions use uint64(ext) so the extended numbers below zero that
// reordering before the first packet can produce index correctly.
func (t *seqTracker) mark(ext int64) {
	t.seen[uint64(ext)/64%uint64(len(t.seen))] |= 1 << (uint64(ext) % 64)
}

func (t *seqTracker) unmark(ext int64) {
	t.seen[uint64(ext)/64%uint64(len(t.seen))] &^= 1 << (uint64(ext) % 64)
}

func (t *seqTracker) isSeen(ext int64) bool {
	if ext > t.max || ext <= t.max-seenBits {
		return false
	}
	return t.seen[uint64(ext)/64%uint64(len(t.seen))]&(1<<(uint64(ext)%64)) != 0
}

// allSeen reports whether every sequence number strictly between a and b
// arrived. Too long a range cannot be checked and counts as incomplete.
func (t *seqTracker) allSeen(a, b int64) bool {
	if b-a > seenBits/2 {
		return false
	}
	for s := a + 1; s < b; s++ {
		if !t.isSeen(s) {
			return false
		}
	}
	return true
}

// update classifies seq and returns its extended value. For seqRestart the
// caller starts a new epoch (reset) with this packet.
func (t *seqTracker) update(seq uint16) (int64, seqVerdict) {
	if !t.init {
		t.reset(seq)
		return t.max, seqNew
	}
	delta := seq - uint16(t.max) // uint16 arithmetic handles the wrap
	switch {
	case delta == 0:
		return t.max, seqDuplicate
	case delta < maxDropout:
		ext := t.max + int64(delta)
		// Forget the bits the window slides past, so they read as unseen.
		if ext-t.max >= seenBits {
			clear(t.seen[:])
		} else {
			for s := t.max + 1; s <= ext; s++ {
				t.unmark(s)
			}
		}
		t.max = ext
		t.mark(ext)
		t.received++
		t.badSeq = noBadSeq
		return ext, seqNew
	case delta > 1<<16-maxMisorder:
		ext := t.max - int64(1<<16-uint32(delta))
		if t.isSeen(ext) {
			return ext, seqDuplicate
		}
		t.mark(ext)
		t.received++
		t.base = min(t.base, ext)
		return ext, seqReordered
	case uint32(seq) == t.badSeq:
		return 0, seqRestart
	default:
		t.badSeq = uint32(seq + 1)
		return 0, seqJump
	}
}

// lost is expected minus received (RFC 3550 A.3), never negative.
func (t *seqTracker) lost() uint64 {
	if !t.init {
		return 0
	}
	expected := uint64(t.max - t.base + 1)
	if t.received >= expected {
		return 0
	}
	return expected - t.received
}

func (t *seqTracker) expected() uint64 {
	if !t.init {
		return 0
	}
	return uint64(t.max - t.base + 1)
}
