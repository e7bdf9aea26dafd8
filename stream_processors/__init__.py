"""The Faust features service: trades -> minute bars, bars -> rolling features -> Feast + Kafka."""
