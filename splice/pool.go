package splice

import "sync"

// Default buffer sizes of a zero BufferPool.
const (
	// DefaultBufferSize is the buffer a direction copies with while bytes
	// flow: 32 KiB, two full TLS records per read.
	DefaultBufferSize = 32 << 10
	// DefaultIdleBufferSize is the buffer a direction waits with: most
	// long-lived connections are idle most of the time, and an idle
	// connection should not hold 2×32 KiB.
	DefaultIdleBufferSize = 2 << 10
)

// BufferPool hands out copy buffers of two sizes: a small one a relay
// direction holds while it waits for traffic, and a large one it switches
// to while bytes flow (a read that fills the small buffer), and back when
// reads turn small again. The zero value is ready to use.
type BufferPool struct {
	// Size is the length of the large buffers; zero means
	// DefaultBufferSize.
	Size int
	// IdleSize is the length of the small buffers; zero means
	// DefaultIdleBufferSize. An IdleSize of Size or more turns the two
	// sizes into one.
	IdleSize int

	large, small sync.Pool
}

var defaultPool BufferPool

func (p *BufferPool) size() int {
	if p.Size <= 0 {
		return DefaultBufferSize
	}
	return p.Size
}

func (p *BufferPool) idleSize() int {
	if p.IdleSize <= 0 {
		return min(DefaultIdleBufferSize, p.size())
	}
	return min(p.IdleSize, p.size())
}

// Get returns a large buffer. Pointers avoid an allocation on every Put
// (staticcheck SA6002).
func (p *BufferPool) Get() *[]byte { return get(&p.large, p.size()) }

// GetIdle returns a small buffer.
func (p *BufferPool) GetIdle() *[]byte { return get(&p.small, p.idleSize()) }

func get(pool *sync.Pool, size int) *[]byte {
	if b, ok := pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, size)
	return &b
}

// Put returns a buffer obtained from Get or GetIdle; buffers of any other
// size are dropped.
func (p *BufferPool) Put(b *[]byte) {
	switch len(*b) {
	case p.size():
		p.large.Put(b)
	case p.idleSize():
		p.small.Put(b)
	}
}
