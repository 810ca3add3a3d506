#!/usr/bin/env python3
"""The old pipeline's consumer, as a baseline for `factorypal consume`: Spark Structured
Streaming reads a Kafka topic of metrics records and writes them to Parquet.

    spark_consume.py run --bootstrap B --topic T --out DIR --checkpoint DIR --jars J1,J2,...
                         [--max-offsets-per-trigger N] [--timings FILE]
    spark_consume.py count DIR        # rows in the Parquet output (pyarrow), printed alone

The job is the seed job's shape: from_json(CAST(value AS STRING)) with a StructType, select
the columns, file sink in Parquet with a checkpoint. The seed ran an endless query with
maxOffsetsPerTrigger=1000 (1,000 records per micro-batch); a benchmark needs a query that ends
once the topic is read, so this runs trigger(availableNow=True), and by default with no
maxOffsetsPerTrigger: one micro-batch of everything, the fastest Spark can do it. Pass
--max-offsets-per-trigger 1000 to see the seed's setting.

Timings (seconds, monotonic) go to --timings as JSON: session start-up (JVM + SparkSession),
the query itself (start() to awaitTermination() returning) and stop.
"""

import argparse
import json
import sys
import time


def run(args: argparse.Namespace) -> int:
    t_begin = time.monotonic()
    # Imported here so `count` needs only pyarrow (and is quick).
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, IntegerType, LongType, StructField, StructType

    builder = (
        SparkSession.builder.appName("factorypal-bench-spark-consume")
        .master("local[2]")  # the machine's 2 cores, like the old job's local deployment
        # Passed to spark-submit before the JVM starts (pyspark launches it), so this sizes
        # the heap of the one JVM that is driver and executor in local mode.
        .config("spark.driver.memory", args.driver_memory)
        # Kafka connector + its runtime deps, resolved by Maven (no Ivy / spark.jars.packages).
        .config("spark.jars", args.jars)
        # Nobody looks at the UI during a benchmark; it only costs start-up time and memory.
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")  # progress bars would fill the log
        .config("spark.sql.session.timeZone", "UTC")
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    t_session = time.monotonic()

    # The records: {"id":8,"val":143.23558324460788,"time":1767252528}; time is Unix seconds.
    schema = StructType(
        [
            StructField("id", IntegerType()),
            StructField("val", DoubleType()),
            StructField("time", LongType()),
        ]
    )

    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", args.bootstrap)
        .option("subscribe", args.topic)
        .option("startingOffsets", "earliest")
    )
    if args.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(args.max_offsets_per_trigger))
    parsed = (
        reader.load()
        .select(F.from_json(F.col("value").cast("string"), schema).alias("r"))
        .select(
            F.col("r.id").alias("id"),
            F.col("r.val").alias("val"),
            F.timestamp_seconds(F.col("r.time")).alias("time"),
        )
    )

    t_query_start = time.monotonic()
    query = (
        parsed.writeStream.format("parquet")
        .option("path", args.out)
        .option("checkpointLocation", args.checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    t_query_end = time.monotonic()
    if query.exception() is not None:
        print(f"spark_consume: query failed: {query.exception()}", file=sys.stderr)
        return 1
    progress = query.recentProgress
    batches = len(progress)
    input_rows = sum(p.get("numInputRows", 0) for p in progress)
    # Where the query's time went, summed over micro-batches (Spark's own phases, ms).
    phases: dict = {}
    for p in progress:
        for k, v in (p.get("durationMs") or {}).items():
            phases[k] = phases.get(k, 0) + v

    version = spark.version
    spark.stop()
    t_end = time.monotonic()

    timings = {
        "spark_version": version,
        "startup_s": t_session - t_begin,
        "query_s": t_query_end - t_query_start,
        "stop_s": t_end - t_query_end,
        "micro_batches": batches,
        "input_rows": input_rows,
        "duration_ms": phases,
    }
    if args.timings:
        with open(args.timings, "w") as f:
            json.dump(timings, f)
    print(json.dumps(timings))
    return 0


def count(args: argparse.Namespace) -> int:
    import pyarrow.dataset as ds

    # pyarrow skips names starting with "_" or ".": Spark's _spark_metadata log, .crc files.
    dataset = ds.dataset(args.dir, format="parquet")
    print(dataset.count_rows())
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the Spark job")
    r.add_argument("--bootstrap", required=True)
    r.add_argument("--topic", required=True)
    r.add_argument("--out", required=True, help="Parquet output dir (fresh)")
    r.add_argument("--checkpoint", required=True, help="checkpoint dir (fresh)")
    r.add_argument("--jars", required=True, help="comma-separated jar paths for spark.jars")
    r.add_argument("--driver-memory", default="1g")
    r.add_argument("--max-offsets-per-trigger", type=int, default=0, help="0 = unset (unlimited)")
    r.add_argument("--timings", help="write timings JSON here")
    r.set_defaults(func=run)
    c = sub.add_parser("count", help="count rows of a Parquet output dir")
    c.add_argument("dir")
    c.set_defaults(func=count)
    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
