//! Embeds `migrations/*.sql` in the library (see `saga_messaging::embedded_migrations!`).

fn main() {
    saga_build::embed_migrations();
}
