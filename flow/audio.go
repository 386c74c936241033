package flow

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/media"
)

//go:embed prompts/*.wav
var promptFS embed.FS

var (
	promptMu    sync.Mutex
	promptCache = map[string][]int16{}
)

// Prompt returns an embedded prompt's audio (8 kHz mono PCM), decoded once.
func Prompt(name string) ([]int16, error) {
	promptMu.Lock()
	defer promptMu.Unlock()
	if pcm, ok := promptCache[name]; ok {
		return pcm, nil
	}
	b, err := promptFS.ReadFile("prompts/" + name + ".wav")
	if err != nil {
		return nil, fmt.Errorf("prompt %q: not found", name)
	}
	pcm, err := media.ReadWAV(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("prompt %q: %w", name, err)
	}
	promptCache[name] = pcm
	return pcm, nil
}

// Limits on audio a flow plays.
const (
	maxAudioBytes = 32 << 20 // ~35 min of 8 kHz 16-bit mono
	fetchTimeout  = 15 * time.Second
	maxCached     = 256
)

// audioCache loads WAV files and URLs once per source and keeps the decoded
// audio, so a prompt played on every call is read once.
type audioCache struct {
	client *http.Client
	mu     sync.Mutex
	items  map[string][]int16
}

func newAudioCache() *audioCache {
	return &audioCache{client: &http.Client{Timeout: fetchTimeout}, items: map[string][]int16{}}
}

func (a *audioCache) load(ctx context.Context, src string) ([]int16, error) {
	a.mu.Lock()
	pcm, ok := a.items[src]
	a.mu.Unlock()
	if ok {
		return pcm, nil
	}
	var err error
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		pcm, err = a.fetch(ctx, src)
	} else {
		pcm, err = media.ReadWAVFile(src)
	}
	if err != nil {
		return nil, fmt.Errorf("audio %s: %w", src, err)
	}
	a.mu.Lock()
	if len(a.items) >= maxCached {
		clear(a.items) // crude, but bounded; prompts are few in practice
	}
	a.items[src] = pcm
	a.mu.Unlock()
	return pcm, nil
}

func (a *audioCache) fetch(ctx context.Context, url string) ([]int16, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", res.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, maxAudioBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxAudioBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxAudioBytes)
	}
	return media.ReadWAV(bytes.NewReader(b))
}
