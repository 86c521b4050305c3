# Build and install tosca-maint on a Debian 12 device.
#
#   make                      release binaries (Swift runtime linked in), man pages,
#                             bash completion (as yourself, not root)
#   sudo make install         PREFIX=/usr/local by default; DESTDIR honoured
#   sudo make uninstall       removes exactly what install put there
#
# `install` builds and generates nothing, so nothing in the tree becomes root's: run
# `make` first. CONFIG=debug installs the debug build instead (the tests do). systemd,
# journalctl and systemd-sysusers look for units, catalogs and sysusers.d/tmpfiles.d
# entries under /usr and /usr/local only: use one of them as PREFIX on a device.
# tosca-sim is not installed: a device carries no simulator.

PREFIX ?= /usr/local
DESTDIR ?=
CONFIG ?= release

BINDIR := $(PREFIX)/bin
UNITDIR := $(PREFIX)/lib/systemd/system
CATALOGDIR := $(PREFIX)/lib/systemd/catalog
SYSUSERSDIR := $(PREFIX)/lib/sysusers.d
TMPFILESDIR := $(PREFIX)/lib/tmpfiles.d
DOCDIR := $(PREFIX)/share/doc/tosca-maint
MAN1DIR := $(PREFIX)/share/man/man1
COMPLETIONDIR := $(PREFIX)/share/bash-completion/completions

PROGRAMS := tosca-maint
UNITS := tosca-maint-backup.service tosca-maint-backup.timer \
         tosca-maint-verify.service tosca-maint-verify.timer \
         tosca-maint-export.service tosca-maint-export.timer \
         tosca-maint-session.path tosca-maint-session.service \
         tosca-maint-failure@.service
RUNBOOKS := $(notdir $(wildcard Runbooks/*.md))

BUILT := .build/$(CONFIG)
STAGE := .build/stage-$(CONFIG)
MANTOOL := .build/debug/generate-manual
# A fixed date keeps the generated pages reproducible: the last commit's.
MANDATE := $(shell git log -1 --format=%cs 2>/dev/null || date -u +%F)

SWIFTFLAGS_release := --static-swift-stdlib
SWIFTFLAGS_debug :=

.PHONY: all build stage install uninstall check-built check-staged

all: build stage

build:
	swift build -c $(CONFIG) $(SWIFTFLAGS_$(CONFIG)) --product tosca-maint
	swift build -c $(CONFIG) $(SWIFTFLAGS_$(CONFIG)) --product tosca-sim
	swift build --product generate-manual

check-staged: check-built
	@for p in $(PROGRAMS); do \
	  test -f "$(STAGE)/man/$$p.1" -a -f "$(STAGE)/completion/$$p" || { echo "Error: $(STAGE) lacks the man page or completion of $$p" >&2; echo "Try: make CONFIG=$(CONFIG)" >&2; exit 2; }; \
	done

check-built:
	@for p in $(PROGRAMS); do \
	  test -x "$(BUILT)/$$p" || { echo "Error: $(BUILT)/$$p is not built" >&2; echo "Try: make CONFIG=$(CONFIG)" >&2; exit 2; }; \
	done
	@test -x "$(MANTOOL)" || { echo "Error: $(MANTOOL) is not built" >&2; echo "Try: make CONFIG=$(CONFIG)" >&2; exit 2; }

# Man pages and completions come from the built binaries' own argument parser. A blank
# line (a paragraph break in the help text) becomes .Pp, which mdoc wants.
stage: check-built
	rm -rf "$(STAGE)"
	mkdir -p "$(STAGE)/man" "$(STAGE)/completion"
	for p in $(PROGRAMS); do \
	  "$(MANTOOL)" "$(BUILT)/$$p" --date "$(MANDATE)" --output-directory "$(STAGE)/man" || exit 1; \
	  sed -i 's/^$$/.Pp/' "$(STAGE)/man/$$p.1" || exit 1; \
	  "$(BUILT)/$$p" --generate-completion-script bash > "$(STAGE)/completion/$$p" || exit 1; \
	done

install: check-staged
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(CATALOGDIR)" \
	  "$(DESTDIR)$(SYSUSERSDIR)" "$(DESTDIR)$(TMPFILESDIR)" "$(DESTDIR)$(DOCDIR)/runbooks" \
	  "$(DESTDIR)$(MAN1DIR)" "$(DESTDIR)$(COMPLETIONDIR)"
	for p in $(PROGRAMS); do \
	  install -m 0755 "$(BUILT)/$$p" "$(DESTDIR)$(BINDIR)/$$p" || exit 1; \
	  install -m 0644 "$(STAGE)/man/$$p.1" "$(DESTDIR)$(MAN1DIR)/$$p.1" || exit 1; \
	  install -m 0644 "$(STAGE)/completion/$$p" "$(DESTDIR)$(COMPLETIONDIR)/$$p" || exit 1; \
	done
	# The units and the catalog name /usr/local: point them at this PREFIX.
	for u in $(UNITS); do \
	  sed 's#/usr/local/#$(PREFIX)/#g' "Timers/$$u" > "$(DESTDIR)$(UNITDIR)/$$u" && chmod 0644 "$(DESTDIR)$(UNITDIR)/$$u" || exit 1; \
	done
	sed 's#/usr/local/#$(PREFIX)/#g' Timers/tosca-maint.catalog > "$(DESTDIR)$(CATALOGDIR)/tosca-maint.catalog"
	chmod 0644 "$(DESTDIR)$(CATALOGDIR)/tosca-maint.catalog"
	install -m 0644 Timers/tosca-maint.sysusers "$(DESTDIR)$(SYSUSERSDIR)/tosca-maint.conf"
	install -m 0644 Timers/tosca-maint.tmpfiles "$(DESTDIR)$(TMPFILESDIR)/tosca-maint.conf"
	for r in $(RUNBOOKS); do install -m 0644 "Runbooks/$$r" "$(DESTDIR)$(DOCDIR)/runbooks/$$r" || exit 1; done
	install -m 0644 README.md "$(DESTDIR)$(DOCDIR)/README.md"

uninstall:
	for p in $(PROGRAMS); do \
	  rm -f "$(DESTDIR)$(BINDIR)/$$p" "$(DESTDIR)$(MAN1DIR)/$$p.1" "$(DESTDIR)$(COMPLETIONDIR)/$$p"; \
	done
	for u in $(UNITS); do rm -f "$(DESTDIR)$(UNITDIR)/$$u"; done
	rm -f "$(DESTDIR)$(CATALOGDIR)/tosca-maint.catalog" "$(DESTDIR)$(SYSUSERSDIR)/tosca-maint.conf" \
	  "$(DESTDIR)$(TMPFILESDIR)/tosca-maint.conf"
	# The doc folder is ours alone (runbooks of whichever version was installed).
	rm -rf "$(DESTDIR)$(DOCDIR)"
