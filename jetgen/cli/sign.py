"""``jetgen sign BUNDLE --key KEYFILE``: sign a bundle's manifest, so that boards holding the key accept
it and refuse anything else (jetgen.signing; docs/bundle.md, "Signed bundles"). Python 3.6."""
import click


@click.command("sign")
@click.argument("bundle", type=click.Path())
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), metavar="KEYFILE",
              help="The shared key file (at least 32 bytes; keep it secret, e.g. mode 0600).")
@click.option("--new-key", is_flag=True, help="Create KEYFILE first with a new random key (never replaces one).")
def sign(bundle, key_file, new_key):
    """Sign BUNDLE with KEYFILE (HMAC-SHA256 over manifest.json, which holds every file's sha256).

    \b
    jetgen sign digits.jetgen --key bundle.key --new-key      # once: make the key, copy it to the boards
    jetgen sign digits.jetgen --key bundle.key
    jetgen sample digits.jetgen --key bundle.key              # on a board: refused unless signed with it
    """
    from jetgen import signing
    from jetgen.runtime.bundle import Bundle

    Bundle.open(bundle, verify=True, key=False)  # an unusable bundle fails before a new key is made
    key = signing.new_key(key_file) if new_key else signing.read_key(key_file)
    path = signing.sign(bundle, key)
    click.echo("Signed {} with key {} ({}).".format(bundle, signing.key_id(key), path))
