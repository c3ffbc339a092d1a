// Command genrepo writes a bare git repository of a given size for the git-sync benchmarks: -files files
// (spread over directories of 100) in the first commit, then -commits-1 commits that each rewrite a few
// files. It streams the history into `git fast-import`, which builds 2,000 commits in about a second.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
)

func main() {
	files := flag.Int("files", 5000, "number of files in the tree")
	commits := flag.Int("commits", 2000, "number of commits on the branch")
	perCommit := flag.Int("changes", 5, "files rewritten by each commit after the first")
	size := flag.Int("size", 1024, "approximate bytes per file")
	out := flag.String("o", "", "path of the bare repository to create (must not exist)")
	flag.Parse()
	if *out == "" || *files < 1 || *commits < 1 {
		fmt.Fprintln(os.Stderr, "genrepo: -o is required; -files and -commits must be at least 1")
		os.Exit(2)
	}
	if err := generate(*out, *files, *commits, *perCommit, *size); err != nil {
		fmt.Fprintln(os.Stderr, "genrepo:", err)
		os.Exit(1)
	}
}

func generate(dir string, files, commits, perCommit, size int) error {
	if err := exec.Command("git", "init", "-q", "--bare", "-b", "main", dir).Run(); err != nil {
		return fmt.Errorf("git init %s: %w", dir, err)
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting git fast-import: %w", err)
	}
	w := bufio.NewWriterSize(stdin, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	path := func(i int) string { return fmt.Sprintf("dir%03d/file%05d.txt", i/100, i) }
	// Content is hex noise (as compressible as source code, roughly 2:1), so pack sizes are realistic.
	content := func(i, rev int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "file %d revision %d\n", i, rev)
		for b.Len() < size {
			fmt.Fprintf(&b, "%016x%016x\n", rng.Uint64(), rng.Uint64())
		}
		return b.String()
	}
	for c := 0; c < commits; c++ {
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter Bench <bench@example.invalid> %d +0000\n", 1700000000+c)
		msg := fmt.Sprintf("commit %d\n", c)
		fmt.Fprintf(w, "data %d\n%s", len(msg), msg)
		var touched []int
		if c == 0 {
			for i := 0; i < files; i++ {
				touched = append(touched, i)
			}
		} else {
			for j := 0; j < perCommit; j++ {
				touched = append(touched, rng.IntN(files))
			}
		}
		for _, i := range touched {
			data := content(i, c)
			fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n%s\n", path(i), len(data), data)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git fast-import: %w", err)
	}
	return nil
}
