package upstream

import "sync"

// BufferPool lends httputil.ReverseProxy its 32 KiB copy buffers, which it
// would otherwise allocate for every request.
type BufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Get lends a buffer.
func (BufferPool) Get() []byte { return *(copyBuffers.Get().(*[]byte)) }

// Put takes a buffer back.
func (BufferPool) Put(b []byte) { copyBuffers.Put(&b) }
