package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Serve answers HTTP requests on ln until Drain or Close: at most Config.MaxConns
// connections open at once (more wait to be accepted), requests read within
// ReadTimeout (headers and body), each write of a response within WriteTimeout (a
// stream's every chunk gets its own), and keep-alive connections closed after
// IdleTimeout. It returns http.ErrServerClosed once drained or closed.
func (s *Server) Serve(ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.ReadTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
	}
	s.hsMu.Lock()
	if s.closed {
		s.hsMu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.hs = append(s.hs, hs)
	s.hsMu.Unlock()
	return hs.Serve(limitListener(ln, s.cfg.MaxConns))
}

// shutdownHTTP stops the listeners of Serve and closes their connections once their
// requests are answered (all of them are ending: the engine has stopped).
func (s *Server) shutdownHTTP() {
	s.hsMu.Lock()
	s.closed = true
	servers := s.hs
	s.hsMu.Unlock()
	for _, hs := range servers {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
		}
		cancel()
	}
}

// limitListener accepts at most n connections open at once: past them, Accept waits
// for one to close, and new connections wait in the kernel's backlog.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limited{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

type limited struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limited) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &slotConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limited) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// slotConn gives its slot back when closed, once.
type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// isTimeout reports a read or write that passed its deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
