package bench

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vbctoken/vbctoken/internal/lambdabuild"
)

// Packages measured, relative to the module root. Hello is aws-lambda-go's floor: a
// function that returns a constant, built exactly like ours.
const (
	HelloPackage     = "./internal/bench/testdata/hello"
	CallbackPackage  = "./functions/callback"
	RefresherPackage = "./functions/refresher"
)

// BuildShipped compiles pkg as vbctoken ships it to provided.al2023 (internal/lambdabuild:
// CGO_ENABLED=0, -tags lambda.norpc, -trimpath, -ldflags='-s -w -buildid=') for linux/goarch into
// outDir/bootstrap, with the go command run in dir (a module root). Sizes are measured on
// arm64, as shipped; cold starts need this machine's architecture (lambdarun.Build builds
// the same way, but only from the current directory, and a baseline lives elsewhere).
func BuildShipped(ctx context.Context, dir, pkg, outDir, goarch string) (string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(outDir, lambdabuild.Binary)
	cmd := lambdabuild.Command(ctx, "go", dir, pkg, outDir, lambdabuild.GOOS, goarch)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s for linux/%s: %w\n%s", pkg, goarch, err, msg)
	}
	return out, nil
}

// ZipSize returns the size of a deployment zip holding the file as "bootstrap", deflated
// at the default level as `zip` does (the Makefile's `zip -X`; sizes agree within a few KB).
func ZipSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "bootstrap", Method: zip.Deflate})
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(w, f); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return int64(buf.Len()), nil
}

// ExportTree writes the files of git revision ref of the repository in repoDir to outDir
// (git archive), so that a baseline can be built next to the working tree.
func ExportTree(ctx context.Context, repoDir, ref, outDir string) error {
	cmd := exec.CommandContext(ctx, "git", "-C", repoDir, "archive", "--format=tar", ref)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git archive %s: %w", ref, err)
	}
	terr := untar(out, outDir)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git archive %s: %w: %s", ref, err, stderr.Bytes())
	}
	return terr
}

func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(name, filepath.Clean(dir)+string(filepath.Separator)) {
			return fmt.Errorf("untar: %q leaves the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(name, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o777)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}
