package agent

import (
	"container/list"
	"sync"
)

// AudioCache keeps rendered phrases (greetings, apologies, fillers,
// goodbyes) so they play at once instead of waiting on the TTS, across
// sessions. It is keyed by the text and everything that changes how it
// sounds. Safe for concurrent use; least recently used entries are evicted
// beyond MaxSamples.
type AudioCache struct {
	// MaxSamples bounds the audio held (default 8 M samples: 16 MB, about
	// 17 minutes of speech).
	MaxSamples int

	mu    sync.Mutex
	ll    *list.List
	m     map[CacheKey]*list.Element
	total int
}

// CacheKey identifies one rendering of a phrase. Endpoint is the TTS
// server's base URL: two servers may give the same voice name to
// different voices.
type CacheKey struct {
	Text, Voice, Provider, Model, Language, Endpoint string
}

// PhraseKey is the key of text spoken by tts with voice and language (the
// provider's own voice when voice is empty).
func PhraseKey(tts *ProviderConfig, text, voice, language string) CacheKey {
	k := CacheKey{Text: text, Voice: voice, Language: language}
	if tts != nil {
		k.Provider, k.Model, k.Endpoint = tts.Provider, tts.Model, tts.BaseURL
		if k.Voice == "" {
			k.Voice = tts.Voice
		}
	}
	return k
}

type cacheEntry struct {
	key CacheKey
	pcm []int16
}

// DefaultCache is shared by sessions that do not set Options.Cache.
var DefaultCache = &AudioCache{}

// Get returns the cached audio for key; the slice must not be modified.
func (c *AudioCache) Get(key CacheKey) ([]int16, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		return nil, false
	}
	e, ok := c.m[key]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*cacheEntry).pcm, true
}

// Put stores audio for key; the cache keeps pcm, so the caller must not
// modify it afterwards.
func (c *AudioCache) Put(key CacheKey, pcm []int16) {
	if len(pcm) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[CacheKey]*list.Element{}
		c.ll = list.New()
	}
	limit := c.MaxSamples
	if limit <= 0 {
		limit = 8 << 20
	}
	if len(pcm) > limit {
		return
	}
	if e, ok := c.m[key]; ok {
		c.total -= len(e.Value.(*cacheEntry).pcm)
		c.ll.Remove(e)
	}
	c.m[key] = c.ll.PushFront(&cacheEntry{key: key, pcm: pcm})
	c.total += len(pcm)
	for c.total > limit {
		e := c.ll.Back()
		ce := e.Value.(*cacheEntry)
		c.ll.Remove(e)
		delete(c.m, ce.key)
		c.total -= len(ce.pcm)
	}
}

// Len reports how many phrases are cached.
func (c *AudioCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
