package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/rabbitc/rabbitc/image"
)

// newLoginCommand is docker's and podman's login: the credentials are
// checked with the registry, then filed in podman's auth.json (see
// image.LoginFile), which pull reads first.
func newLoginCommand() *cobra.Command {
	var user, password, authfile string
	var stdin, tlsVerify bool
	cmd := &cobra.Command{
		Use:   "login [-u USER] [-p PASSWORD | --password-stdin] REGISTRY",
		Short: "Log in to a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := image.ParseRegistry(args[0], !tlsVerify)
			if err != nil {
				return err
			}
			if stdin && password != "" {
				return errors.New("--password and --password-stdin are exclusive: give one")
			}
			in := bufio.NewReader(cmd.InOrStdin())
			if user == "" {
				if user, err = prompt(in, "Username: ", false); err != nil {
					return err
				}
			}
			switch {
			case stdin:
				b, err := io.ReadAll(io.LimitReader(in, 64<<10))
				if err != nil {
					return fmt.Errorf("read the password from standard input: %w", err)
				}
				password = strings.TrimRight(string(b), "\r\n")
			case password == "":
				if password, err = prompt(in, "Password: ", true); err != nil {
					return err
				}
			}
			if user == "" || password == "" {
				return errors.New("a user name and a password are needed (-u USER --password-stdin)")
			}
			if authfile == "" {
				if authfile, err = image.LoginFile(); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := image.Login(ctx, reg, user, password, !tlsVerify); err != nil {
				return err
			}
			if err := image.SaveCredentials(authfile, reg, user, password); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Login Succeeded!")
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&user, "username", "u", "", "user name")
	fs.StringVarP(&password, "password", "p", "", "password (visible to other users in the process list: prefer --password-stdin)")
	fs.BoolVar(&stdin, "password-stdin", false, "read the password from standard input")
	fs.StringVar(&authfile, "authfile", "", "credentials file (default: $XDG_RUNTIME_DIR/containers/auth.json)")
	fs.BoolVar(&tlsVerify, "tls-verify", true, "require HTTPS with a valid certificate (plain HTTP is always allowed to loopback registries)")
	return cmd
}

func newLogoutCommand() *cobra.Command {
	var authfile string
	var all bool
	cmd := &cobra.Command{
		Use:   "logout [--all] [REGISTRY]",
		Short: "Log out of a registry: remove its credentials",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 1) {
				return errors.New("name one registry, or --all")
			}
			var err error
			if authfile == "" {
				if authfile, err = image.LoginFile(); err != nil {
					return err
				}
			}
			var reg = image.NoRegistry
			if !all {
				if reg, err = image.ParseRegistry(args[0], false); err != nil {
					return err
				}
			}
			err = image.RemoveCredentials(authfile, reg, all)
			if errors.Is(err, image.ErrNotLoggedIn) {
				return fmt.Errorf("not logged in to %s (no entry in %s)", args[0], authfile)
			}
			if err != nil {
				return err
			}
			if all {
				fmt.Fprintln(cmd.OutOrStdout(), "Removed login credentials for all registries")
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "Removed login credentials for %s\n", args[0])
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove the credentials of every registry")
	cmd.Flags().StringVar(&authfile, "authfile", "", "credentials file (default: $XDG_RUNTIME_DIR/containers/auth.json)")
	return cmd
}

// prompt asks on the terminal (without echo for a password); with no
// terminal it says how to give the value instead.
func prompt(in *bufio.Reader, label string, secret bool) (string, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New("no terminal to ask on: give -u USER and --password-stdin")
	}
	fmt.Fprint(os.Stderr, label)
	if secret {
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		return string(b), err
	}
	s, err := in.ReadString('\n')
	return strings.TrimSpace(s), err
}
