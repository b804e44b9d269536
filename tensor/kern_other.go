//go:build !amd64 || purego

package tensor

func platformImpls() []*impl { return []*impl{goImpl} }
