package splice

import (
	"sync"
	"sync/atomic"
)

// DefaultBufferSize is the length of a zero BufferPool's buffers: 32 KiB,
// two full TLS records per read.
const DefaultBufferSize = 32 << 10

// BufferPool hands out copy buffers. A relay direction borrows one only
// when its source is readable, drains what is ready and gives it back
// before it waits again, so idle connections hold none. The zero value is
// ready to use.
type BufferPool struct {
	// Size is the length of the buffers; zero means DefaultBufferSize.
	Size int

	pool        sync.Pool
	outstanding atomic.Int64
}

var defaultBuffers BufferPool

func (p *BufferPool) size() int {
	if p.Size <= 0 {
		return DefaultBufferSize
	}
	return p.Size
}

// Get returns a buffer of Size bytes. Pointers avoid an allocation on every
// Put (staticcheck SA6002).
func (p *BufferPool) Get() *[]byte {
	p.outstanding.Add(1)
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, p.size())
	return &b
}

// Put returns a buffer obtained from Get. Buffers of any other size are
// dropped (and not counted).
func (p *BufferPool) Put(b *[]byte) {
	if len(*b) != p.size() {
		return
	}
	p.outstanding.Add(-1)
	p.pool.Put(b)
}

// Outstanding reports how many buffers are out of the pool: borrowed by
// Get and not yet returned by Put. Once every relay using the pool has
// ended it is zero.
func (p *BufferPool) Outstanding() int64 { return p.outstanding.Load() }

// popLast takes the last element of *s, the one put there most recently,
// clearing its slot, or reports false if *s is empty.
func popLast[T any](s *[]T) (T, bool) {
	var zero T
	n := len(*s)
	if n == 0 {
		return zero, false
	}
	v := (*s)[n-1]
	(*s)[n-1] = zero
	*s = (*s)[:n-1]
	return v, true
}
