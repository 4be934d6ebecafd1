package redisstore

import (
	"cmp"
	"path"
	"slices"
	"strings"
)

// cleanKey puts a key in the one form the store holds: no leading, trailing
// or doubled slashes, no "." or ".." components. FileStorage gets the same
// effect from filepath.Join, so "a//b/" and "a/b" name one file in both; the
// leading "/" keeps ".." from climbing above the root, where FileStorage
// would leave its directory. The root directory is "".
func cleanKey(key string) string {
	return strings.TrimPrefix(path.Clean("/"+key), "/")
}

// underRange is the ZRANGE BYLEX interval of the index members under dir:
// every key starting with dir+"/" ('0' is the byte after '/'). The root
// covers everything.
func underRange(dir string) (lo, hi string) {
	if dir == "" {
		return "-", "+"
	}
	return "[" + dir + "/", "(" + dir + "0"
}

// listing computes List's answer from the file keys under dir (clean; given
// is dir as the caller wrote it), with the semantics of
// certmagic.FileStorage, a filepath.Walk: non-recursive lists the direct
// children, files and directories alike; recursive lists every file and
// every directory below dir. Keys come out in the order Walk visits them.
func listing(given, dir string, files []string, recursive bool) []string {
	base := dir
	if base != "" {
		base += "/"
	}
	out := make([]string, 0, len(files))
	for _, f := range files {
		rel := strings.TrimPrefix(f, base)
		if !recursive {
			if i := strings.IndexByte(rel, '/'); i >= 0 {
				rel = rel[:i] // a directory child
			}
			out = append(out, base+rel)
			continue
		}
		for i := range len(rel) {
			if rel[i] == '/' {
				out = append(out, base+rel[:i]) // an intermediate directory
			}
		}
		out = append(out, f)
	}
	slices.SortFunc(out, walkOrder)
	out = slices.Compact(out)
	if given != dir {
		// FileStorage joins the prefix as given ("/a/" lists "/a/b"), the
		// file system having cleaned it only to find the files.
		for i, k := range out {
			out[i] = path.Join(given, strings.TrimPrefix(k, base))
		}
	}
	return out
}

// walkOrder orders keys as filepath.Walk visits paths: component by
// component, each directory's entries by name, a directory just before its
// contents. That is byte order with '/' below every other byte: "a/b",
// "a/b/c", "a/b.txt" (where plain byte order puts "a/b.txt" before
// "a/b/c", since '.' < '/').
func walkOrder(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		switch {
		case ca == cb:
			continue
		case ca == '/':
			return -1
		case cb == '/':
			return 1
		}
		return cmp.Compare(ca, cb)
	}
	return cmp.Compare(len(a), len(b))
}
