import ArgumentParser

@main
struct Blendd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blendd",
        abstract: "Runs LLM-Blender (PairRanker + GenFuser) as a Kafka worker fleet that stores results in PostgreSQL.",
        discussion: """
        Jobs arrive on a Kafka topic, are ranked pairwise and fused, stored in PostgreSQL \
        and announced as CloudEvents. Start with `blendd dev` to run everything on one machine.
        """,
        subcommands: []
    )
}
