package splice

import "sync"

// DefaultBufferSize is the size of the buffers in a zero BufferPool: 32 KiB,
// large enough for two full TLS records per read.
const DefaultBufferSize = 32 << 10

// BufferPool hands out copy buffers. Buffers are only held while a relay
// direction is active, and returned when it ends. The zero value is ready to
// use and hands out DefaultBufferSize buffers.
type BufferPool struct {
	// Size is the length of the buffers handed out; zero means
	// DefaultBufferSize.
	Size int

	pool sync.Pool
}

var defaultPool BufferPool

func (p *BufferPool) size() int {
	if p.Size <= 0 {
		return DefaultBufferSize
	}
	return p.Size
}

// Get returns a buffer of the pool's size. Pointers avoid an allocation on
// every Put (staticcheck SA6002).
func (p *BufferPool) Get() *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, p.size())
	return &b
}

// Put returns a buffer obtained from Get.
func (p *BufferPool) Put(b *[]byte) {
	if len(*b) != p.size() {
		return
	}
	p.pool.Put(b)
}
