// Worker: the pipeline from Kafka through ranking and fusion to PostgreSQL and completion events.
