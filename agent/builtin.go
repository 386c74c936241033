package agent

import (
	_ "embed"
	"sync"

	"github.com/voxbridge/voxbridge/agent/internal/audio"
)

// The apology built into the binary, for when no provider can speak: the
// TTS itself failed, or the agent could not start at all. Made with
// espeak-ng and sox (8 kHz, 16-bit mono, -3 dB):
//
//	espeak-ng -v en-us -s 160 -w raw.wav "I'm sorry, I'm having technical difficulties."
//	sox raw.wav -r 8000 -c 1 -b 16 -e signed-integer apology.wav \
//	    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse norm -3
//
//go:embed prompts/apology.wav
var apologyWAV []byte

// BuiltinApologyText is what BuiltinApology says.
const BuiltinApologyText = "I'm sorry, I'm having technical difficulties."

var builtinApology = sync.OnceValue(func() []int16 {
	pcm, rate, err := audio.DecodeWAV(apologyWAV)
	if err != nil || rate != 8000 {
		panic("agent: the embedded apology is not an 8 kHz WAV") // a build defect, caught by its test
	}
	return pcm
})

// BuiltinApology returns the built-in apology as 8 kHz PCM; the slice is
// shared and must not be modified.
func BuiltinApology() []int16 { return builtinApology() }
